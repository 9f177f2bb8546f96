//! The users listed in the configuration file, with argon2id password hashes.
//!
//! Password hashing is deliberately slow, so verification runs on the
//! [`VerifierPool`]: a burst of logins queues instead of starving everything else.
//! An unknown user is verified against a dummy hash with the same cost, so the response
//! time does not tell which usernames exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use async_trait::async_trait;

use super::{AuthError, Authenticator, VerifierPool};
use crate::tickets::Principal;

/// One `[[users]]` entry.
#[derive(Clone)]
pub struct UserRecord {
    pub username: String,
    /// An argon2id PHC string, checked at config load.
    pub password_hash: String,
    pub attributes: BTreeMap<String, Vec<String>>,
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

/// Hashes `password` with argon2id and the crate's default (OWASP-recommended) cost.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A hash no password matches, with the same algorithm and cost as `hash-password`
/// output, so verifying an unknown user costs the same as a known one. Random bytes in
/// PHC form rather than a real hash: hashing at startup cost 12 ms and a 19 MiB peak.
fn dummy_hash() -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        argon2::Params::DEFAULT_M_COST,
        argon2::Params::DEFAULT_T_COST,
        argon2::Params::DEFAULT_P_COST,
        b64.encode(crate::crypto::random_bytes::<16>()),
        b64.encode(crate::crypto::random_bytes::<32>()),
    )
}

/// Checks that `phc` is an argon2id PHC string; the error text is for operators.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses `{}`; only argon2id hashes are accepted",
            parsed.algorithm.as_str()
        ));
    }
    Ok(())
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
        let dummy = dummy_hash();
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
    use super::*;

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
        let dummy = dummy_hash();
        let real = hash_password("x").unwrap();
        let (d, r) = (
            PasswordHash::new(&dummy).unwrap(),
            PasswordHash::new(&real).unwrap(),
        );
        assert_eq!(d.algorithm, r.algorithm);
        assert_eq!(d.version, r.version);
        assert_eq!(d.params, r.params);
        assert_eq!(d.hash.map(|h| h.len()), r.hash.map(|h| h.len()));
        assert_ne!(dummy, dummy_hash(), "a fresh salt each time");
        // A full verification that fails on the password, not on the hash's form.
        assert!(matches!(
            Argon2::default().verify_password(b"x", &d),
            Err(argon2::password_hash::Error::PasswordInvalid)
        ));
    }

    #[test]
    fn only_argon2id_hashes_are_accepted() {
        assert!(check_password_hash(&hash_password("x").unwrap()).is_ok());
        assert!(check_password_hash("plaintext").is_err());
        assert!(
            check_password_hash("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Ml2Y8yXQbEnU1NxiHbVYsw")
                .is_err()
        );
    }
}
