//! Who may log in. An [`Authenticator`] turns a username and password into a
//! [`Principal`]. Sources: the static users of the TOML file, and LDAP or Active
//! Directory servers; a [`Chain`] tries them in order.

mod chain;
pub mod ldap;
mod users;
mod verifier;

use async_trait::async_trait;

pub use chain::Chain;
pub use users::{StaticUsers, UserRecord, check_password_hash, hash_password};
pub use verifier::VerifierPool;

use crate::tickets::Principal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong password or unknown user: the two are never distinguished to the client.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The directory reports the account locked (too many failures, or by an admin).
    #[error("account locked")]
    AccountLocked,
    #[error("account disabled")]
    AccountDisabled,
    /// The password has expired or must be changed before use.
    #[error("password expired")]
    PasswordExpired,
    #[error("account expired")]
    AccountExpired,
    /// The source could not answer (down, slow, misconfigured); the text is for logs.
    #[error("authentication source unavailable: {0}")]
    Unavailable(String),
}

/// Reachability of one source, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHealth {
    pub name: String,
    pub reachable: bool,
}

#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    async fn authenticate(&self, username: &str, password: &str) -> Result<Principal, AuthError>;

    /// Sources that depend on a remote system report whether it answers.
    async fn health(&self) -> Vec<SourceHealth> {
        Vec::new()
    }
}
