//! `[ui]`: language, template overrides and the look of the pages; also the theme a
//! service may have of its own (`services.theme`).

use std::path::PathBuf;

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    default_locale: String,
    templates_dir: Option<String>,
    theme: Option<Theme>,
}

/// `theme = { display_name, logo_url, accent_colour }`, in `[ui]` or a service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Theme {
    display_name: Option<String>,
    logo_url: Option<String>,
    accent_colour: Option<String>,
}

/// The user interface.
#[derive(Debug, Clone)]
pub struct Ui {
    pub default_locale: String,
    pub templates_dir: Option<PathBuf>,
    /// The look of pages not shown for a themed service.
    pub theme: super::Theme,
}

impl Section for Raw {
    const NAME: &'static str = "ui";
    type Checked = Ui;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Ui> {
        let locales = crate::locales::codes();
        if !locales.contains(&self.default_locale.as_str()) {
            cx.problem(
                "default_locale",
                format!(
                    "`{}` has no catalogue; choose one of {}",
                    self.default_locale,
                    locales.join(", ")
                ),
            );
            return None;
        }
        let templates_dir = match self.templates_dir {
            None => None,
            Some(dir) => {
                let path = cx.resolve(&dir);
                if !path.is_dir() {
                    cx.problem(
                        "templates_dir",
                        format!("{} is not a folder", path.display()),
                    );
                    return None;
                }
                Some(path)
            }
        };
        let theme = match self.theme {
            None => super::Theme::default(),
            Some(theme) => theme.validate(&mut cx.at("theme"))?,
        };
        Some(Ui {
            default_locale: self.default_locale,
            templates_dir,
            theme,
        })
    }
}

impl Theme {
    pub(super) fn validate(self, cx: &mut Scope<'_>) -> Option<super::Theme> {
        let before = cx.problems();
        if let Some(colour) = &self.accent_colour {
            let ok = colour.len() == 7
                && colour.starts_with('#')
                && colour[1..].chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                cx.problem(
                    "accent_colour",
                    format!("`{colour}` is not a colour like \"#1f5fa8\""),
                );
            }
        }
        if let Some(logo) = &self.logo_url {
            let ok = logo.starts_with('/') && !logo.starts_with("//")
                || url::Url::parse(logo).is_ok_and(|u| u.scheme() == "https");
            if !ok || logo.chars().any(char::is_control) {
                cx.problem(
                    "logo_url",
                    format!("`{logo}` must be an https:// URL or a path on this server"),
                );
            }
        }
        (cx.problems() == before).then_some(super::Theme {
            display_name: self.display_name,
            logo_url: self.logo_url,
            accent_colour: self.accent_colour,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn ui_mistakes_name_the_file_and_key() {
        let e = load_text("[ui]\ndefault_locale = \"tlh\"\n").unwrap_err();
        assert_eq!(keys(&e), ["ui.default_locale"]);
        assert_problem(&e, "ui.default_locale", "choose one of en, fr");

        let e = load_text("[ui]\ntemplates_dir = \"/nonexistent/templates\"\n").unwrap_err();
        assert_problem(&e, "ui.templates_dir", "is not a folder");

        let e = load_text(
            "[ui]\ntheme = { logo_url = \"http://example.org/logo.png\", accent_colour = \"#12345\", accent_color = \"x\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "ui.theme.accent_color",
                "ui.theme.accent_colour",
                "ui.theme.logo_url"
            ]
        );
        assert_problem(
            &e,
            "ui.theme.accent_color",
            "did you mean `ui.theme.accent_colour`?",
        );
    }

    #[test]
    fn a_theme_may_name_a_logo_on_this_server() {
        let s = load_text(
            "[ui]\ntheme = { display_name = \"Sign-in\", logo_url = \"/cas/logo.svg\", accent_colour = \"#1f5fa8\" }\n",
        )
        .unwrap();
        assert_eq!(s.ui.theme.logo_url.as_deref(), Some("/cas/logo.svg"));
        assert_eq!(s.ui.default_locale, "en");
    }
}
