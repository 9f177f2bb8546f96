//! `[[users]]`: accounts kept in the file, with argon2id password hashes.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::Section;
use super::report::Scope;
use crate::crypto::check_password_hash;

/// The `[[users]]` entries, in file order.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Raw(Vec<User>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    username: String,
    password_hash: String,
    #[serde(default)]
    attributes: BTreeMap<String, OneOrMany>,
}

/// An attribute with one value, or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Section for Raw {
    const NAME: &'static str = "users";
    type Checked = Vec<UserRecord>;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Vec<UserRecord>> {
        let mut seen = HashSet::new();
        let mut users = Vec::with_capacity(self.0.len());
        for (i, u) in self.0.into_iter().enumerate() {
            let mut cx = cx.entry("", i);
            if u.username.trim().is_empty() || u.username.chars().any(char::is_control) {
                cx.problem(
                    "username",
                    "must be a non-empty name without control characters",
                );
            }
            if !seen.insert(u.username.clone()) {
                cx.problem("username", format!("`{}` is listed twice", u.username));
            }
            if let Err(e) = check_password_hash(&u.password_hash) {
                cx.problem(
                    "password_hash",
                    format!(
                        "{}; create one with `cas-server hash-password`",
                        crate::telemetry::Chain(&e)
                    ),
                );
            }
            let attributes = u
                .attributes
                .into_iter()
                .map(|(k, v)| {
                    let values = match v {
                        OneOrMany::One(s) => vec![s],
                        OneOrMany::Many(list) => list,
                    };
                    (k, values)
                })
                .collect();
            users.push(UserRecord {
                username: u.username,
                password_hash: u.password_hash,
                attributes,
            });
        }
        Some(users)
    }
}

/// One `[[users]]` entry.
#[derive(Clone)]
pub struct UserRecord {
    pub username: String,
    /// An argon2id PHC string, checked at load.
    pub password_hash: String,
    pub attributes: std::collections::BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("password_hash", &"***")
            .field("attributes", &self.attributes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn users_need_argon2id_hashes_and_attributes_may_be_lists() {
        let hash = crate::crypto::hash_password("pw").unwrap();
        let s = load_text(&format!(
            "[[users]]\nusername = \"a\"\npassword_hash = \"{hash}\"\nattributes = {{ mail = \"a@x\", memberOf = [\"g1\", \"g2\"] }}\n"
        ))
        .unwrap();
        assert_eq!(s.users[0].attributes["memberOf"], vec!["g1", "g2"]);
        assert_eq!(s.users[0].attributes["mail"], vec!["a@x"]);
        let e = load_text("[[users]]\nusername = \"a\"\npassword_hash = \"secret\"\n").unwrap_err();
        assert_eq!(keys(&e), vec!["users[0].password_hash"]);
        assert!(e.to_string().contains("hash-password"));
        assert_problem(&e, "users[0].password_hash", "not a PHC hash string");
    }

    #[test]
    fn a_user_listed_twice_is_named_at_its_second_entry() {
        let hash = crate::crypto::hash_password("pw").unwrap();
        let user = format!("[[users]]\nusername = \"a\"\npassword_hash = \"{hash}\"\n");
        let e = load_text(&format!("{user}{user}")).unwrap_err();
        assert_eq!(keys(&e), ["users[1].username"]);
        assert_problem(&e, "users[1].username", "`a` is listed twice");
    }
}
