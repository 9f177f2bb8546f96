//! Clients for the Redis servers the store talks to: the configured credentials and CA
//! applied alike to a single Redis, to the sentinels and to the primary they name.

use crate::tickets::RedisSetupError;

/// Connection settings with the configured user and password, if any.
pub(super) fn with_credentials(
    settings: redis::RedisConnectionInfo,
    username: Option<&str>,
    password: Option<&crate::crypto::Secret<String>>,
) -> redis::RedisConnectionInfo {
    let settings = match username {
        Some(user) => settings.set_username(user),
        None => settings,
    };
    match password {
        Some(password) => settings.set_password(password.expose()),
        None => settings,
    }
}

/// A client for `info`, trusting `ca_pem` (PEM) over TLS when given.
pub(super) fn client(
    info: redis::ConnectionInfo,
    ca_pem: Option<&[u8]>,
) -> Result<redis::Client, RedisSetupError> {
    match ca_pem {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(RedisSetupError::Client)
}
