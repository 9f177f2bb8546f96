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

use super::Principal;
use super::{AuthError, Authenticator, VerifierPool};

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

/// Highest argon2 memory cost accepted (1 GiB): more would let one login exhaust memory.
const MAX_M_COST: u32 = 1 << 20;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// Checks that `phc` is an argon2id PHC string of a sane cost; the error text is for
/// operators.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses `{}`; only argon2id hashes are accepted",
            parsed.algorithm.as_str()
        ));
    }
    let params = argon2::Params::try_from(&parsed)
        .map_err(|e| format!("has unusable argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST
    {
        return Err(format!(
            "costs too much to verify (at most m={MAX_M_COST}, t={MAX_T_COST}, p={MAX_P_COST}); \
             `cas-server hash-password` writes m={}, t={}, p={}",
            argon2::Params::DEFAULT_M_COST,
            argon2::Params::DEFAULT_T_COST,
            argon2::Params::DEFAULT_P_COST
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

    #[test]
    fn hashes_too_costly_to_verify_are_refused() {
        let huge = "$argon2id$v=19$m=4194304,t=1000,p=1$c2FsdHNhbHQ$Ml2Y8yXQbEnU1NxiHbVYsw";
        let e = check_password_hash(huge).unwrap_err();
        assert!(e.contains("costs too much"), "{e}");
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
