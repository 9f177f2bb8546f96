//! `[request_filter]`: length limits applied before any ticket or session is touched.

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    max_ticket_length: usize,
    max_url_length: usize,
    max_username_length: usize,
    max_value_length: usize,
}

/// The request filter's length limits.
#[derive(Debug, Clone, Copy)]
pub struct RequestFilter {
    pub max_ticket_length: usize,
    pub max_url_length: usize,
    pub max_username_length: usize,
    pub max_value_length: usize,
}

impl Section for Raw {
    const NAME: &'static str = "request_filter";
    type Checked = RequestFilter;

    fn validate(self, cx: &mut Scope<'_>) -> Option<RequestFilter> {
        for (name, value) in [
            ("max_ticket_length", self.max_ticket_length),
            ("max_url_length", self.max_url_length),
            ("max_username_length", self.max_username_length),
            ("max_value_length", self.max_value_length),
        ] {
            if value < 32 {
                cx.problem(
                    name,
                    "must be at least 32 (tickets alone are 32 characters)",
                );
                return None;
            }
        }
        Some(RequestFilter {
            max_ticket_length: self.max_ticket_length,
            max_url_length: self.max_url_length,
            max_username_length: self.max_username_length,
            max_value_length: self.max_value_length,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn request_filter_mistakes_name_the_file_and_key() {
        let e = load_text("[request_filter]\nmax_url_length = 31\n").unwrap_err();
        assert_eq!(keys(&e), ["request_filter.max_url_length"]);
        assert_problem(&e, "request_filter.max_url_length", "at least 32");
    }
}
