//! `[validation]`: what the ticket validation endpoints release.

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    attributes_on_v2: bool,
}

#[derive(Debug, Clone)]
pub struct Validation {
    pub attributes_on_v2: bool,
}

impl Section for Raw {
    const NAME: &'static str = "validation";
    type Checked = Validation;

    fn validate(self, _: &mut Scope<'_>) -> Option<Validation> {
        Some(Validation {
            attributes_on_v2: self.attributes_on_v2,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, load_text, load_with};

    #[test]
    fn validation_mistakes_name_the_file_or_variable_and_key() {
        let e = load_text("[validation]\nattributes_on_v2 = \"yes\"\n").unwrap_err();
        assert_problem(
            &e,
            "validation.attributes_on_v2",
            "invalid type: string, expected a boolean",
        );
        let env = [("CAS__VALIDATION__ATTRIBUTES_ON_V2", "yes")];
        let e = load_with(crate::config::tests::TEXT, &env).unwrap_err();
        assert_eq!(
            e.problems[0].origin,
            "environment variable CAS__VALIDATION__ATTRIBUTES_ON_V2"
        );
        let s = load_with(
            crate::config::tests::TEXT,
            &[("CAS__VALIDATION__ATTRIBUTES_ON_V2", "true")],
        )
        .unwrap();
        assert!(s.validation.attributes_on_v2);
    }
}
