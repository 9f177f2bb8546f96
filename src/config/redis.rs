//! `[tickets.redis]`: the shared ticket store of a cluster. The URL may carry a
//! password, so no message quotes it.

use std::time::Duration;

use serde::Deserialize;

use super::report::Scope;
use crate::crypto::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    url: String,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<String>,
    key_prefix: String,
    pool_size: u32,
    connect_timeout: String,
    command_timeout: String,
    encrypt: bool,
    eviction: String,
    min_replicas_acks: u32,
    replica_ack_timeout: String,
    sentinels: Option<Vec<String>>,
    sentinel_master: Option<String>,
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
    cluster_nodes: Option<Vec<String>>,
}

impl Raw {
    pub(super) fn validate(self, cx: &mut Scope<'_>) -> Option<RedisOptions> {
        let connect_timeout = cx.duration("connect_timeout", &self.connect_timeout);
        let command_timeout = cx.duration("command_timeout", &self.command_timeout);
        let pool_ok = cx.within("pool_size", self.pool_size as usize, 1..=64);
        for (name, timeout) in [
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
        ] {
            if timeout.is_some_and(|t| t > Duration::from_secs(30)) {
                cx.problem(
                    name,
                    "must be at most 30s: a request waits up to connect_timeout + command_timeout before it is answered 503",
                );
            }
        }
        let tls = self.tls(cx);
        let ca_pem = match (&self.ca_file, tls) {
            (None, _) => Some(None),
            (Some(_), Some(false)) => {
                cx.problem(
                    "ca_file",
                    "a CA file only applies to TLS: use a rediss:// URL",
                );
                None
            }
            (Some(file), _) => cx
                .pem_certificates("ca_file", file)
                .and_then(|_| std::fs::read(cx.resolve(file)).ok())
                .map(Some),
        };
        if self.key_prefix.is_empty()
            || self.key_prefix.len() > 64
            || self
                .key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "*?[]\\".contains(c))
        {
            cx.problem(
                "key_prefix",
                "must be 1 to 64 characters without spaces or * ? [ ] \\, e.g. \"cas:\"",
            );
            return None;
        }
        if self.password.is_some()
            && url::Url::parse(&self.url).is_ok_and(|u| u.password().is_some())
        {
            cx.problem(
                "password",
                "give the password either in the URL or here, not both",
            );
            return None;
        }
        let refuse_eviction = match self.eviction.as_str() {
            "warn" => Some(false),
            "refuse" => Some(true),
            other => {
                cx.problem(
                    "eviction",
                    format!("`{other}` is not one of \"warn\", \"refuse\""),
                );
                None
            }
        };
        let sentinel = self.sentinel(cx);
        let cluster = self.cluster(cx);
        let acks_ok = cx.within("min_replicas_acks", self.min_replicas_acks as usize, 0..=16);
        let ack_timeout = cx.duration("replica_ack_timeout", &self.replica_ack_timeout);
        if let (Some(wait), Some(command)) = (ack_timeout, command_timeout)
            && self.min_replicas_acks > 0
            && (wait.is_zero() || wait >= command)
        {
            cx.problem(
                "replica_ack_timeout",
                "must be more than 0 and less than command_timeout: the wait for the replicas is part of the command",
            );
            return None;
        }
        tls?;
        pool_ok.then_some(())?;
        acks_ok.then_some(())?;
        Some(RedisOptions {
            url: Secret::new(self.url),
            username: self.username,
            password: self.password.map(Secret::new),
            ca_pem: ca_pem?,
            key_prefix: self.key_prefix,
            pool_size: self.pool_size as usize,
            connect_timeout: connect_timeout?,
            command_timeout: command_timeout?,
            encrypt: self.encrypt,
            refuse_eviction: refuse_eviction?,
            sentinel: sentinel?,
            cluster_nodes: cluster?,
            min_replicas_acks: self.min_replicas_acks as usize,
            replica_ack_timeout: ack_timeout?,
        })
    }

    /// `Some(None)` without sentinels; `None` after a problem.
    fn sentinel(&self, cx: &mut Scope<'_>) -> Option<Option<Box<SentinelOptions>>> {
        let Some(addresses) = &self.sentinels else {
            for (key, given) in [
                ("sentinel_master", self.sentinel_master.is_some()),
                ("sentinel_username", self.sentinel_username.is_some()),
                ("sentinel_password", self.sentinel_password.is_some()),
            ] {
                if given {
                    cx.problem(key, "only applies with `sentinels`");
                    return None;
                }
            }
            return Some(None);
        };
        let mut ok = true;
        if addresses.is_empty() {
            cx.problem(
                "sentinels",
                "list at least one sentinel, e.g. [\"redis://10.0.0.11:26379\"] (three or more for a quorum)",
            );
            ok = false;
        }
        for address in addresses {
            if !bare_address(address) {
                // Never quote it: a URL may carry a password.
                cx.problem(
                    "sentinels",
                    "each is redis://host:port or rediss://host:port, without credentials (sentinel_username, sentinel_password) or a path",
                );
                ok = false;
                break;
            }
        }
        let master = match self.sentinel_master.as_deref() {
            Some(name) if !name.is_empty() && !name.chars().any(char::is_whitespace) => name,
            _ => {
                cx.problem(
                    "sentinel_master",
                    "with sentinels, name the primary as the sentinels know it (their `sentinel monitor <name>`)",
                );
                return None;
            }
        };
        ok.then(|| {
            Some(Box::new(SentinelOptions {
                addresses: addresses.clone(),
                master: master.to_owned(),
                username: self.sentinel_username.clone(),
                password: self.sentinel_password.clone().map(Secret::new),
            }))
        })
    }

    /// `Some(vec![])` without cluster nodes; `None` after a problem.
    fn cluster(&self, cx: &mut Scope<'_>) -> Option<Vec<String>> {
        let Some(nodes) = &self.cluster_nodes else {
            return Some(Vec::new());
        };
        if nodes.is_empty() {
            cx.problem(
                "cluster_nodes",
                "list at least one node of the cluster, e.g. [\"redis://10.0.0.21:6379\"] (the others are found from it; list several in case one is down)",
            );
            return None;
        }
        if self.sentinels.is_some() {
            cx.problem(
                "cluster_nodes",
                "a Redis Cluster fails over by itself: give either `cluster_nodes` or `sentinels`, not both",
            );
            return None;
        }
        if !nodes.iter().all(|n| bare_address(n)) {
            cx.problem(
                "cluster_nodes",
                "each is redis://host:port or rediss://host:port, without credentials (username, password) or a path",
            );
            return None;
        }
        let scheme = |u: &str| u.split_once("://").map(|(s, _)| s.to_owned());
        if nodes.iter().any(|n| scheme(n) != scheme(&self.url)) {
            cx.problem(
                "cluster_nodes",
                "use the scheme of `url` (redis:// or rediss://) for every node",
            );
            return None;
        }
        if url::Url::parse(&self.url).is_ok_and(|u| !matches!(u.path(), "" | "/" | "/0")) {
            cx.problem(
                "url",
                "a Redis Cluster has only database 0: leave the database out of the URL",
            );
            return None;
        }
        // A hash tag in the prefix would put every key in one slot, on one node.
        if self.key_prefix.contains(['{', '}']) {
            cx.problem(
                "key_prefix",
                "must not contain { or } with a cluster: the server places each session's keys with a hash tag of its own",
            );
            return None;
        }
        Some(nodes.clone())
    }

    /// Whether the URL asks for TLS (`rediss://`); `None` when it is not one to use.
    fn tls(&self, cx: &mut Scope<'_>) -> Option<bool> {
        match url::Url::parse(&self.url) {
            // `#insecure` would turn certificate checks off in the client library; a query
            // could carry other client options. Neither belongs in this setting.
            Ok(u) if u.fragment().is_some() || u.query().is_some() => {
                cx.problem(
                    "url",
                    "must not have a query or #fragment (e.g. #insecure); the form is redis[s]://[user:password@]host:port/db",
                );
                None
            }
            Ok(u) if ::redis::IntoConnectionInfo::into_connection_info(u.as_str()).is_err() => {
                cx.problem(
                    "url",
                    "is not a Redis URL the client accepts (check the port and the database number after the /)",
                );
                None
            }
            Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => Some(false),
            Ok(u) if u.scheme() == "rediss" && u.host_str().is_some() => Some(true),
            // Never quote the URL itself: it may carry a password.
            Ok(u) => {
                cx.problem(
                    "url",
                    format!(
                        "the scheme `{}` is not redis:// or rediss:// with a host, e.g. \"redis://127.0.0.1:6379\"",
                        u.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                cx.problem(
                    "url",
                    format!("is not a URL ({e}); e.g. \"redis://127.0.0.1:6379\""),
                );
                None
            }
        }
    }
}

/// `redis://host:port` or `rediss://host:port`, nothing more (credentials are given apart).
fn bare_address(address: &str) -> bool {
    url::Url::parse(address).is_ok_and(|u| {
        matches!(u.scheme(), "redis" | "rediss")
            && u.host_str().is_some()
            && u.port().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && matches!(u.path(), "" | "/")
            && u.query().is_none()
            && u.fragment().is_none()
    })
}

/// `[tickets.redis]`.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// May carry a password, so it never prints.
    pub url: Secret<String>,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// Trusted roots for `rediss://`, PEM; the system's roots when absent.
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub encrypt: bool,
    /// Refuse to start on a Redis whose `maxmemory-policy` may evict sessions, instead of
    /// warning.
    pub refuse_eviction: bool,
    /// Find the primary through these sentinels; `url` then gives only its scheme,
    /// database and credentials.
    pub sentinel: Option<Box<SentinelOptions>>,
    /// Seed nodes of a Redis Cluster (the store then spreads sessions over its primaries);
    /// empty for a single Redis or Sentinel. `url` is one more seed, and gives the scheme
    /// and credentials for all.
    pub cluster_nodes: Vec<String>,
    /// Replicas that must hold a new session before the login is answered (`WAIT`).
    pub min_replicas_acks: usize,
    pub replica_ack_timeout: Duration,
}

/// Redis Sentinel: where to ask for the primary, and as whom.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// `redis://host:port` or `rediss://host:port` of each sentinel.
    pub addresses: Vec<String>,
    /// The primary's name in the sentinels' configuration.
    pub master: String,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
}

impl RedisOptions {
    /// `redis://` to anything but this machine.
    pub fn is_plain_remote(&self) -> bool {
        // `redis:` is not a special scheme to the URL parser: an IPv4 host stays text.
        url::Url::parse(self.url.expose()).is_ok_and(|u| {
            let host = u.host_str().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            u.scheme() == "redis" && !loopback
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{KEY, assert_problem, keys, load_text};

    /// A configuration using the Redis store, with `redis` lines in `[tickets.redis]`.
    fn redis(redis: &str) -> String {
        format!(
            "[tgc]\n{}[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\n{redis}",
            crate::tgc::TgcKeys::generate().to_config()
        )
    }

    #[test]
    fn redis_mistakes_are_reported_without_quoting_the_url() {
        let e = load_text(
            "[tickets]\nstore = \"memcached\"\nkey = \"short\"\n[tickets.redis]\nurl = \"http://user:hunter2@x\"\npool_size = 0\nconect_timeout = \"1s\"\n"
        )
        .unwrap_err();
        let k = keys(&e);
        assert!(
            k.contains(&"tickets.key") && k.contains(&"tickets.store"),
            "{k:?}"
        );
        assert!(k.contains(&"tickets.redis.conect_timeout"), "{k:?}");
        let e = load_text(&format!(
            "[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\nurl = \"http://user:hunter2@x\"\npool_size = 0\nca_file = \"ca.pem\"\n"
        ))
        .unwrap_err();
        let k = keys(&e);
        assert!(
            k.contains(&"tickets.redis.url") && k.contains(&"tickets.redis.pool_size"),
            "{k:?}"
        );
        assert_problem(
            &e,
            "tickets.redis.url",
            "is not a Redis URL the client accepts",
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = load_text(&format!(
            "[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\nurl = \"redis://x\"\nca_file = \"ca.pem\"\n"
        ))
        .unwrap_err();
        assert!(keys(&e).contains(&"tickets.redis.ca_file"));
    }

    #[test]
    fn redis_urls_prefixes_and_timeouts_are_checked() {
        for (lines, key) in [
            (
                "url = \"rediss://r.internal#insecure\"\n",
                "tickets.redis.url",
            ),
            (
                "url = \"redis://r.internal/?protocol=resp3\"\n",
                "tickets.redis.url",
            ),
            ("key_prefix = \"\"\n", "tickets.redis.key_prefix"),
            ("key_prefix = \"cas:*\"\n", "tickets.redis.key_prefix"),
            (
                "command_timeout = \"1m\"\n",
                "tickets.redis.command_timeout",
            ),
            (
                "url = \"redis://:pw@r.internal\"\npassword = \"pw\"\n",
                "tickets.redis.password",
            ),
        ] {
            let e = load_text(&redis(lines)).unwrap_err();
            assert_eq!(keys(&e), vec![key], "{lines}");
        }
        let remote = load_text(&redis("url = \"redis://r.internal:6379\"\n")).unwrap();
        assert!(
            remote.warnings().iter().any(|w| w.contains("rediss://")),
            "{:?}",
            remote.warnings()
        );
        let local = load_text(&redis("url = \"redis://127.0.0.1:6379\"\n")).unwrap();
        assert!(local.warnings().is_empty(), "{:?}", local.warnings());
        let plain = load_text(&redis("encrypt = false\n")).unwrap();
        assert!(
            plain
                .warnings()
                .iter()
                .any(|w| w.contains("encrypt is off"))
        );
    }

    #[test]
    fn sentinel_settings_are_checked_without_quoting_them() {
        for (lines, key, says) in [
            (
                "sentinels = []\nsentinel_master = \"cas\"\n",
                "tickets.redis.sentinels",
                "at least one",
            ),
            (
                "sentinels = [\"redis://:hunter2@10.0.0.1:26379\"]\nsentinel_master = \"cas\"\n",
                "tickets.redis.sentinels",
                "without credentials",
            ),
            (
                "sentinels = [\"redis://10.0.0.1\"]\nsentinel_master = \"cas\"\n",
                "tickets.redis.sentinels",
                "host:port",
            ),
            (
                "sentinels = [\"redis://10.0.0.1:26379\"]\n",
                "tickets.redis.sentinel_master",
                "name the primary",
            ),
            (
                "sentinel_master = \"cas\"\n",
                "tickets.redis.sentinel_master",
                "only applies",
            ),
            (
                "sentinel_password = \"hunter2\"\n",
                "tickets.redis.sentinel_password",
                "only applies",
            ),
            (
                "min_replicas_acks = 1\nreplica_ack_timeout = \"5s\"\n",
                "tickets.redis.replica_ack_timeout",
                "less than command_timeout",
            ),
            (
                "min_replicas_acks = 17\n",
                "tickets.redis.min_replicas_acks",
                "between 0 and 16",
            ),
        ] {
            let e = load_text(&redis(lines)).unwrap_err();
            assert_problem(&e, key, says);
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let settings = load_text(&redis(
            "sentinels = [\"redis://10.0.0.1:26379\", \"rediss://10.0.0.2:26380\"]\nsentinel_master = \"cas\"\nsentinel_password = \"s3cret\"\n",
        ))
        .unwrap();
        let crate::config::TicketStore::Redis(options) = settings.tickets.store else {
            panic!("the Redis store");
        };
        let sentinel = options.sentinel.expect("sentinels");
        assert_eq!(sentinel.addresses.len(), 2);
        assert_eq!(sentinel.master, "cas");
        assert_eq!(
            sentinel.password.map(|p| p.expose().clone()).as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn cluster_settings_are_checked_without_quoting_them() {
        for (lines, key, says) in [
            (
                "cluster_nodes = []\n",
                "tickets.redis.cluster_nodes",
                "at least one",
            ),
            (
                "cluster_nodes = [\"redis://:hunter2@10.0.0.1:6379\"]\n",
                "tickets.redis.cluster_nodes",
                "without credentials",
            ),
            (
                "cluster_nodes = [\"rediss://10.0.0.1:6379\"]\n",
                "tickets.redis.cluster_nodes",
                "scheme of `url`",
            ),
            (
                "cluster_nodes = [\"redis://10.0.0.1:6379\"]\nsentinels = [\"redis://10.0.0.1:26379\"]\nsentinel_master = \"cas\"\n",
                "tickets.redis.cluster_nodes",
                "not both",
            ),
            (
                "cluster_nodes = [\"redis://10.0.0.1:6379\"]\nurl = \"redis://10.0.0.2:6379/3\"\n",
                "tickets.redis.url",
                "only database 0",
            ),
            (
                "cluster_nodes = [\"redis://10.0.0.1:6379\"]\nkey_prefix = \"{cas}:\"\n",
                "tickets.redis.key_prefix",
                "hash tag",
            ),
        ] {
            let e = load_text(&redis(lines)).unwrap_err();
            assert_problem(&e, key, says);
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let settings = load_text(&redis(
            "url = \"redis://10.0.0.1:6379\"\ncluster_nodes = [\"redis://10.0.0.2:6379\", \"redis://10.0.0.3:6379\"]\n",
        ))
        .unwrap();
        let crate::config::TicketStore::Redis(options) = settings.tickets.store else {
            panic!("the Redis store");
        };
        assert_eq!(options.cluster_nodes.len(), 2);
    }
}
