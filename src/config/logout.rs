//! `[logout]`: what `/logout` does after ending the session.

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    follow_service_redirects: bool,
}

#[derive(Debug, Clone)]
pub struct Logout {
    pub follow_service_redirects: bool,
}

impl Section for Raw {
    const NAME: &'static str = "logout";
    type Checked = Logout;

    fn validate(self, _: &mut Scope<'_>) -> Option<Logout> {
        Some(Logout {
            follow_service_redirects: self.follow_service_redirects,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, load_text};

    #[test]
    fn logout_mistakes_name_the_file_and_key() {
        let e = load_text("[logout]\nfollow_service_redirect = true\n").unwrap_err();
        assert_problem(
            &e,
            "logout.follow_service_redirect",
            "unknown key; did you mean `logout.follow_service_redirects`?",
        );
        let e = load_text("[logout]\nfollow_service_redirects = 1\n").unwrap_err();
        assert_problem(
            &e,
            "logout.follow_service_redirects",
            "invalid type: integer, expected a boolean",
        );
    }
}
