//! User-interface strings in message catalogues (`static/i18n/*.toml`, compiled in), and
//! the choice of catalogue from `Accept-Language`.

use serde::{Deserialize, Serialize};

use crate::locales::BUILTIN;

/// Every string a page shows. A catalogue missing a key, or with an unknown one, fails
/// to load (and the unit test below fails), so translations cannot fall out of step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Messages {
    pub lang: String,
    pub site_title: String,
    pub sign_in_title: String,
    pub signing_in_to: String,
    pub username: String,
    pub password: String,
    pub remember_me: String,
    pub warn: String,
    pub submit: String,
    pub security_hint: String,
    pub bad_credentials: String,
    pub account_locked: String,
    pub account_disabled: String,
    pub password_expired: String,
    pub account_expired: String,
    pub form_expired: String,
    pub form_invalid: String,
    pub missing_credentials: String,
    pub signed_in_title: String,
    pub signed_in_as: String,
    pub signed_in_hint: String,
    pub sign_out: String,
    pub signed_out_title: String,
    pub signed_out_text: String,
    pub sign_in_again: String,
    pub continue_to_app: String,
    pub warn_title: String,
    pub warn_text: String,
    #[serde(rename = "continue")]
    pub continue_: String,
    pub cancel: String,
    pub post_title: String,
    pub post_text: String,
    pub unauthorized_service_title: String,
    pub unauthorized_service_text: String,
    pub service_required_title: String,
    pub service_required_text: String,
    pub bad_request_title: String,
    pub unavailable_title: String,
    pub unavailable_text: String,
    pub internal_title: String,
    pub internal_text: String,
    pub not_found_title: String,
    pub not_found_text: String,
    pub throttled_title: String,
    pub throttled_text: String,
    pub slowed_title: String,
    pub slowed_text: String,
}

/// The built-in locales' codes.
pub fn locales() -> Vec<&'static str> {
    crate::locales::codes()
}

/// The pages cannot be set up: an operator template, or a built-in catalogue.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("cannot read ui.templates_dir {}", .0.display())]
    TemplatesDir(std::path::PathBuf, #[source] std::io::Error),
    #[error("cannot read the template {}", .0.display())]
    Read(std::path::PathBuf, #[source] std::io::Error),
    #[error("the template {} does not parse", .0.display())]
    Parse(std::path::PathBuf, #[source] minijinja::Error),
    #[error("the built-in catalogue `{0}` does not parse")]
    Catalogue(&'static str, #[source] toml::de::Error),
    #[error("no built-in catalogue for `{0}`")]
    NoCatalogue(String),
}

#[derive(Debug)]
pub struct Catalogues {
    catalogues: Vec<Messages>,
    default: usize,
}

impl Catalogues {
    /// All built-in catalogues, with `default_locale` (a built-in code) as the fallback.
    pub fn builtin(default_locale: &str) -> Result<Self, PagesError> {
        let catalogues = BUILTIN
            .iter()
            .map(|(code, text)| {
                toml::from_str::<Messages>(text).map_err(|e| PagesError::Catalogue(code, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default = catalogues
            .iter()
            .position(|m| m.lang == default_locale)
            .ok_or_else(|| PagesError::NoCatalogue(default_locale.to_owned()))?;
        Ok(Self {
            catalogues,
            default,
        })
    }

    /// The best catalogue for an `Accept-Language` header: highest `q` first, a
    /// region-specific tag (`fr-CA`) matching its language (`fr`).
    pub fn pick(&self, accept_language: Option<&str>) -> &Messages {
        let mut ranges: Vec<(f32, &str)> = accept_language
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let tag = pieces.next()?.trim();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (!tag.is_empty() && q > 0.0).then_some((q, tag))
            })
            .collect();
        // Stable: equal weights keep the client's order.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges
            .iter()
            .find_map(|(_, tag)| {
                let language = tag.split('-').next().unwrap_or(tag).to_ascii_lowercase();
                self.catalogues.iter().find(|m| m.lang == language)
            })
            .unwrap_or(&self.catalogues[self.default])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_is_complete_and_the_best_language_wins() {
        let c = Catalogues::builtin("en").unwrap();
        assert_eq!(c.pick(None).lang, "en");
        assert_eq!(c.pick(Some("fr-CA,fr;q=0.9,en;q=0.8")).lang, "fr");
        assert_eq!(c.pick(Some("de, en;q=0.5, fr;q=0.7")).lang, "fr");
        assert_eq!(c.pick(Some("de")).lang, "en", "default");
        assert_eq!(c.pick(Some("fr;q=0, en")).lang, "en");
        assert_eq!(c.pick(Some(";;,q=x")).lang, "en");
        assert_eq!(
            Catalogues::builtin("fr").unwrap().pick(Some("de")).lang,
            "fr"
        );
        assert!(Catalogues::builtin("xx").is_err());
        assert_eq!(c.pick(Some("fr")).submit, "Se connecter");
    }
}
