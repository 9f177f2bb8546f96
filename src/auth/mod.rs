//! Who may log in. An [`Authenticator`] turns a username and password into a
//! [`Principal`]. Sources: the static users of the TOML file, and LDAP or Active
//! Directory servers; a [`Chain`] tries them in order.

mod chain;
pub mod ldap;
mod users;
mod verifier;

use std::sync::Arc;

use async_trait::async_trait;

pub use crate::config::UserRecord;
pub use crate::crypto::{PasswordHashError, check_password_hash, hash_password};
pub use chain::Chain;
pub use ldap::LdapFault;
pub use users::StaticUsers;
pub use verifier::VerifierPool;

/// The authenticated user as released to services: what every source answers, and what
/// an SSO session remembers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    pub id: String,
    /// Attribute name → values; every attribute may be multi-valued (P3-05).
    pub attributes: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, thiserror::Error)]
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
    /// The source could not answer (down, slow, misconfigured); the cause is for logs.
    #[error("authentication source unavailable")]
    Unavailable(#[source] Arc<SourceError>),
}

/// Equal by kind: two outages are the same answer to the user, whatever their causes.
impl PartialEq for AuthError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl AuthError {
    pub(crate) fn unavailable(cause: SourceError) -> Self {
        Self::Unavailable(Arc::new(cause))
    }
}

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("LDAP source `{name}` failed")]
    Ldap {
        name: String,
        #[source]
        fault: Box<ldap::LdapFault>,
    },
    /// The password verifier threads are gone (the server is stopping).
    #[error("the password verifier {0}")]
    Verifier(&'static str),
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
