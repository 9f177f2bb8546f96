//! `[sso]`: what a single sign-on session allows, and remember-me.

use std::time::Duration;

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    proxy_authn_enabled: bool,
    create_cookie_on_renew: bool,
    allow_missing_service: bool,
    required_service_pattern: Option<String>,
    remember_me: RememberMe,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RememberMe {
    enabled: bool,
    duration: String,
}

#[derive(Debug, Clone)]
pub struct Sso {
    /// Proxy authentication (`pgtUrl`, `/proxy`) as a whole.
    pub proxy_authn_enabled: bool,
    /// TGC-09: a forced (renew) login also (re)creates the SSO cookie.
    pub create_cookie_on_renew: bool,
    /// `/login` without a `service` is allowed (the "you are signed in" page).
    pub allow_missing_service: bool,
    /// When set, every `service` given to `/login` must match it too (anchored).
    pub required_service_pattern: Option<regex::Regex>,
    /// Remember-me sessions and their lifetime; `None` when the feature is off.
    pub remember_me: Option<Duration>,
}

impl Section for Raw {
    const NAME: &'static str = "sso";
    type Checked = Sso;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Sso> {
        let duration = cx
            .at("remember_me")
            .duration("duration", &self.remember_me.duration);
        if duration.is_some_and(|d| d > Duration::from_secs(90 * 86_400)) {
            cx.at("remember_me").problem(
                "duration",
                "a remember-me session may last at most 3 months (CAS §4.1.5)",
            );
            return None;
        }
        let required_service_pattern = match self.required_service_pattern {
            None => Some(None),
            Some(re) => cx.regex("required_service_pattern", &re).map(Some),
        };
        Some(Sso {
            proxy_authn_enabled: self.proxy_authn_enabled,
            create_cookie_on_renew: self.create_cookie_on_renew,
            allow_missing_service: self.allow_missing_service,
            required_service_pattern: required_service_pattern?,
            remember_me: if self.remember_me.enabled {
                Some(duration?)
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn sso_mistakes_name_the_file_and_key() {
        let e = load_text(
            "[sso]\nrequired_service_pattern = \"(\"\n[sso.remember_me]\nduration = \"1y\"\n",
        )
        .unwrap_err();
        assert_eq!(keys(&e), ["sso.remember_me.duration"]);
        assert_problem(&e, "sso.remember_me.duration", "at most 3 months");

        let e = load_text("[sso]\nrequired_service_pattern = \"(\"\n").unwrap_err();
        assert_problem(
            &e,
            "sso.required_service_pattern",
            "invalid regular expression",
        );
    }

    #[test]
    fn remember_me_is_off_unless_enabled_and_patterns_are_anchored() {
        let s = load_text("").unwrap();
        assert!(s.sso.remember_me.is_none());
        let s = load_text(
            "[sso]\nrequired_service_pattern = 'https://[a-z]+\\.example\\.org/.*'\n[sso.remember_me]\nenabled = true\n",
        )
        .unwrap();
        assert_eq!(
            s.sso.remember_me,
            Some(std::time::Duration::from_secs(14 * 86_400))
        );
        let re = s.sso.required_service_pattern.unwrap();
        assert!(re.is_match("https://app.example.org/x"));
        assert!(!re.is_match("https://evil.com/?https://app.example.org/x"));
    }
}
