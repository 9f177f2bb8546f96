//! Finding the primary through Redis Sentinel, as the sentinel client guidelines say: ask
//! the sentinels in turn where the primary is (`SENTINEL get-master-addr-by-name`),
//! connect there, and check with `ROLE` that it is the primary (during a failover a
//! sentinel may still name the old one, and a replica would refuse every write).
//!
//! The `redis` crate's `SentinelClient` takes the same steps, but opens the primary with
//! `Client::open`: neither `tickets.redis.ca_file` nor the pool's timeouts would apply to
//! it. This file is those three steps with both, and nothing more; the pool calls it
//! for every new connection, so a failover is followed the first time a connection to
//! the old primary breaks or is refused a write.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo as _, RedisError};

use super::connect::{client, with_credentials};
use crate::config::SentinelOptions;
use crate::tickets::RedisSetupError;

pub(super) struct Sentinels {
    sentinels: Vec<redis::Client>,
    master: String,
    /// The primary's database and credentials, from `url`.
    primary: redis::RedisConnectionInfo,
    /// Whether the primary speaks TLS (`rediss://` in `url`).
    tls: bool,
    ca_pem: Option<Vec<u8>>,
}

impl Sentinels {
    pub(super) fn new(
        options: &SentinelOptions,
        primary: redis::RedisConnectionInfo,
        tls: bool,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, RedisSetupError> {
        let sentinels = options
            .addresses
            .iter()
            .map(|address| {
                let info = address
                    .as_str()
                    .into_connection_info()
                    .map_err(RedisSetupError::Url)?;
                let settings = with_credentials(
                    info.redis_settings().clone(),
                    options.username.as_deref(),
                    options.password.as_ref(),
                );
                client(info.set_redis_settings(settings), ca_pem.as_deref())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sentinels,
            master: options.master.clone(),
            primary,
            tls,
            ca_pem,
        })
    }

    /// A connection to the primary the first sentinel that answers names, once it has
    /// said it is the primary.
    pub(super) async fn primary(
        &self,
        config: &AsyncConnectionConfig,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let mut last = None;
        for sentinel in &self.sentinels {
            let named: redis::RedisResult<Option<(String, u16)>> = async {
                let mut c = sentinel
                    .get_multiplexed_async_connection_with_config(config)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async(&mut c)
                    .await
            }
            .await;
            let outcome = match named {
                Ok(Some((host, port))) => self.connect(host, port, config).await,
                Ok(None) => Err(RedisError::from((
                    redis::ErrorKind::Client,
                    "a sentinel does not know tickets.redis.sentinel_master",
                ))),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((redis::ErrorKind::Client, "no sentinel is configured"))
        }))
    }

    async fn connect(
        &self,
        host: String,
        port: u16,
        config: &AsyncConnectionConfig,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let info = addr
            .into_connection_info()?
            .set_redis_settings(self.primary.clone());
        let client = client(info, self.ca_pem.as_deref()).map_err(|e| match e {
            RedisSetupError::Url(e) | RedisSetupError::Client(e) => e,
        })?;
        let mut c = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await?;
        let is_primary = role.first().is_some_and(|r| {
            redis::from_redis_value::<String>(r.clone()).is_ok_and(|r| r == "master")
        });
        if is_primary {
            Ok(c)
        } else {
            Err(RedisError::from((
                redis::ErrorKind::Client,
                "the sentinels name a server that is not (or no longer) the primary",
            )))
        }
    }
}
