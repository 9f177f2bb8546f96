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

/// A client for the Redis Cluster that `info` (the configured URL, with `settings`, its
/// credentials) and `nodes` belong to: they are where it starts; it finds the others.
pub(super) fn cluster(
    info: &redis::ConnectionInfo,
    nodes: &[String],
    settings: redis::RedisConnectionInfo,
    options: &crate::config::RedisOptions,
) -> Result<redis::cluster::ClusterClient, RedisSetupError> {
    use redis::IntoConnectionInfo as _;
    let mut seeds = vec![info.clone().set_redis_settings(settings.clone())];
    for node in nodes {
        let node = node
            .as_str()
            .into_connection_info()
            .map_err(RedisSetupError::Url)?;
        seeds.push(node.set_redis_settings(settings.clone()));
    }
    let mut builder = redis::cluster::ClusterClientBuilder::new(seeds)
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.command_timeout)
        // Redirections (MOVED, ASK) and a node's failover are retried here, briefly: the
        // pool bounds the whole call anyway, and a request must not wait out a backoff.
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(200);
    if let Some(pem) = &options.ca_pem {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
    }
    builder.build().map_err(RedisSetupError::Client)
}
