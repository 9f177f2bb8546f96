//! `[login]`: the login form's lifetime and the keys sealing its single-use token.

use std::time::Duration;

use serde::Deserialize;

use super::Section;
use super::report::Scope;
use crate::crypto::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    form_ttl: String,
    flow_key: Option<String>,
    #[serde(default)]
    previous_flow_keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub form_ttl: Duration,
    /// Keys for login-flow tokens: the first seals, all open (rotation). Empty: a random
    /// key per process.
    pub flow_keys: Vec<Secret<[u8; 32]>>,
}

impl Section for Raw {
    const NAME: &'static str = "login";
    type Checked = Login;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Login> {
        let form_ttl = cx.duration("form_ttl", &self.form_ttl);
        if self.flow_key.is_none() && !self.previous_flow_keys.is_empty() {
            cx.problem(
                "previous_flow_keys",
                "rotation needs the current login.flow_key too",
            );
            return None;
        }
        let mut flow_keys = Vec::new();
        if let Some(key) = &self.flow_key {
            flow_keys.push(cx.random_key("flow_key", key)?);
        }
        for (i, key) in self.previous_flow_keys.iter().enumerate() {
            flow_keys.push(cx.entry("previous_flow_keys", i).random_key("", key)?);
        }
        Some(Login {
            form_ttl: form_ttl?,
            flow_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{KEY, assert_problem, keys, load_text};

    #[test]
    fn login_mistakes_name_the_file_and_key() {
        let e =
            load_text("[login]\nform_ttl = \"soon\"\nprevious_flow_keys = [\"x\"]\n").unwrap_err();
        assert_eq!(keys(&e), ["login.form_ttl", "login.previous_flow_keys"]);
        assert_problem(&e, "login.previous_flow_keys", "rotation needs");

        let e = load_text(&format!(
            "[login]\nflow_key = \"{KEY}\"\nprevious_flow_keys = [\"{KEY}\", \"short\"]\n"
        ))
        .unwrap_err();
        assert_problem(
            &e,
            "login.previous_flow_keys[1]",
            "must be 32 bytes in base64url",
        );
    }

    #[test]
    fn flow_keys_are_the_current_one_then_the_previous_ones() {
        let s = load_text(&format!(
            "[login]\nflow_key = \"{KEY}\"\nprevious_flow_keys = [\"{KEY}\"]\n"
        ))
        .unwrap();
        assert_eq!(s.login.flow_keys.len(), 2);
        assert!(load_text("").unwrap().login.flow_keys.is_empty());
    }
}
