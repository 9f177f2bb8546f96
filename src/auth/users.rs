//! The users listed in the configuration file, with argon2id password hashes.
//!
//! Password hashing is deliberately slow, so verification runs on the
//! [`VerifierPool`]: a burst of logins queues instead of starving everything else.
//! An unknown user is verified against a dummy hash with the same cost, so the response
//! time does not tell which usernames exist.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use async_trait::async_trait;

use super::{AuthError, Authenticator, VerifierPool};
use super::{Principal, UserRecord};

/// A hash no password matches, in PHC form with `params` (`m=…,t=…,p=…`), so that
/// verifying an unknown user costs what a known one does. Random bytes rather than a
/// real hash: hashing at startup cost 12 ms and a 19 MiB peak.
fn dummy_hash(params: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!(
        "$argon2id$v=19${params}${}${}",
        b64.encode(crate::crypto::random_bytes::<16>()),
        b64.encode(crate::crypto::random_bytes::<32>()),
    )
}

/// The cost `hash-password` writes.
fn default_params() -> String {
    format!(
        "m={},t={},p={}",
        argon2::Params::DEFAULT_M_COST,
        argon2::Params::DEFAULT_T_COST,
        argon2::Params::DEFAULT_P_COST
    )
}

/// The parameters most of `users` were hashed with: the cost an unknown name must
/// imitate (with mixed costs, no single dummy can match them all).
fn usual_params(users: &[UserRecord]) -> String {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for user in users {
        if let Ok(parsed) = PasswordHash::new(&user.password_hash) {
            *counts.entry(parsed.params.to_string()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map_or_else(default_params, |(params, _)| params)
}

/// Users listed in the configuration file.
#[derive(Debug)]
pub struct StaticUsers {
    users: HashMap<String, Arc<UserRecord>>,
    dummy_hash: Arc<str>,
    verifier: VerifierPool,
}

impl StaticUsers {
    pub fn new(users: Vec<UserRecord>, verifier: VerifierPool) -> Self {
        let dummy = dummy_hash(&usual_params(&users));
        Self {
            users: users
                .into_iter()
                .map(|u| (u.username.clone(), Arc::new(u)))
                .collect(),
            dummy_hash: dummy.into(),
            verifier,
        }
    }
}

#[async_trait]
impl Authenticator for StaticUsers {
    async fn authenticate(&self, username: &str, password: &str) -> Result<Principal, AuthError> {
        let user = self.users.get(username).cloned();
        let hash: Arc<str> = user.as_ref().map_or_else(
            || self.dummy_hash.clone(),
            |u| u.password_hash.as_str().into(),
        );
        let password = password.to_owned();
        let verified = self
            .verifier
            .run(move || {
                PasswordHash::new(&hash).is_ok_and(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await?;
        match user {
            Some(user) if verified => Ok(Principal {
                id: user.username.clone(),
                attributes: user.attributes.clone(),
            }),
            _ => Err(AuthError::InvalidCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crypto::hash_password;

    fn users() -> StaticUsers {
        let mut attributes = BTreeMap::new();
        attributes.insert("mail".to_owned(), vec!["a@example.org".to_owned()]);
        StaticUsers::new(
            vec![UserRecord {
                username: "alice".into(),
                password_hash: hash_password("correct horse").unwrap(),
                attributes,
            }],
            VerifierPool::new(2, 0).unwrap(),
        )
    }

    #[tokio::test]
    async fn right_password_yields_principal_with_attributes() {
        let p = users()
            .authenticate("alice", "correct horse")
            .await
            .unwrap();
        assert_eq!(p.id, "alice");
        assert_eq!(p.attributes["mail"], vec!["a@example.org"]);
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_fail_alike() {
        let u = users();
        assert!(matches!(
            u.authenticate("alice", "wrong").await,
            Err(AuthError::InvalidCredentials)
        ));
        assert!(matches!(
            u.authenticate("bob", "correct horse").await,
            Err(AuthError::InvalidCredentials)
        ));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = dummy_hash(&default_params());
        let real = hash_password("x").unwrap();
        let (d, r) = (
            PasswordHash::new(&dummy).unwrap(),
            PasswordHash::new(&real).unwrap(),
        );
        assert_eq!(d.algorithm, r.algorithm);
        assert_eq!(d.version, r.version);
        assert_eq!(d.params, r.params);
        assert_eq!(d.hash.map(|h| h.len()), r.hash.map(|h| h.len()));
        assert_ne!(
            dummy,
            dummy_hash(&default_params()),
            "a fresh salt each time"
        );
        // A full verification that fails on the password, not on the hash's form.
        assert!(matches!(
            Argon2::default().verify_password(b"x", &d),
            Err(argon2::password_hash::Error::PasswordInvalid)
        ));
    }

    #[test]
    fn an_unknown_name_costs_what_most_configured_users_cost() {
        let cheap = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$Ml2Y8yXQbEnU1NxiHbVYsw";
        let user = |name: &str, hash: &str| UserRecord {
            username: name.into(),
            password_hash: hash.into(),
            attributes: BTreeMap::new(),
        };
        let users = [
            user("a", cheap),
            user("b", cheap),
            user("c", &hash_password("x").unwrap()),
        ];
        assert_eq!(usual_params(&users), "m=8,t=1,p=1");
        assert_eq!(usual_params(&[]), default_params());
        let dummy = dummy_hash(&usual_params(&users));
        let parsed = PasswordHash::new(&dummy).unwrap();
        assert_eq!(parsed.params.to_string(), "m=8,t=1,p=1");
    }
}
