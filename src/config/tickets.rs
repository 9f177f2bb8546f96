//! `[tickets]`: lifetimes, the store tickets live in, and the registry key that
//! protects them at rest.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::login::Login;
use super::report::Scope;
use super::tgc::{Tgc, TgcKeySource};
use super::{Section, redis};
use crate::crypto::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    tgt_idle_ttl: String,
    tgt_hard_ttl: String,
    st_ttl: String,
    pt_ttl: String,
    reaper_interval: String,
    store: String,
    key: Option<String>,
    key_file: Option<String>,
    memory: Memory,
    redis: redis::Raw,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Memory {
    snapshot_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Tickets {
    pub tgt_idle_ttl: Duration,
    pub tgt_hard_ttl: Duration,
    pub st_ttl: Duration,
    pub pt_ttl: Duration,
    pub reaper_interval: Duration,
    pub store: TicketStore,
    /// Encrypts tickets at rest and keys their stored ids (Redis, the snapshot file).
    pub key: Option<Secret<[u8; 32]>>,
    /// `[tickets.memory] snapshot_file`: live tickets kept across a graceful restart.
    pub snapshot_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum TicketStore {
    Memory,
    Redis(Box<super::RedisOptions>),
}

impl Section for Raw {
    const NAME: &'static str = "tickets";
    type Checked = Tickets;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Tickets> {
        let idle = cx.duration("tgt_idle_ttl", &self.tgt_idle_ttl);
        let hard = cx.duration("tgt_hard_ttl", &self.tgt_hard_ttl);
        let st = cx.duration("st_ttl", &self.st_ttl);
        let pt = cx.duration("pt_ttl", &self.pt_ttl);
        let reaper = cx.duration("reaper_interval", &self.reaper_interval);
        if let (Some(idle), Some(hard)) = (idle, hard)
            && hard < idle
        {
            cx.problem(
                "tgt_hard_ttl",
                format!(
                    "the hard limit ({}) is shorter than tickets.tgt_idle_ttl ({}); make tgt_hard_ttl at least as long",
                    humantime::format_duration(hard),
                    humantime::format_duration(idle)
                ),
            );
            return None;
        }
        for (name, ttl) in [("st_ttl", st), ("pt_ttl", pt)] {
            if ttl.is_some_and(|t| t > Duration::from_secs(300)) {
                cx.problem(
                    name,
                    "one-use tickets should live at most 5 minutes (CAS §3.1.1, §3.2.1); the default is \"10s\"",
                );
                return None;
            }
        }
        let key = match cx.secret("key", self.key.as_deref(), self.key_file.as_deref()) {
            Ok(None) => Some(None),
            Ok(Some(text)) => cx.random_key("key", &text).map(Some),
            Err(_) => None,
        };
        let store = match self.store.as_str() {
            "memory" => Some(TicketStore::Memory),
            "redis" => self
                .redis
                .validate(&mut cx.at("redis"))
                .map(|options| TicketStore::Redis(Box::new(options))),
            other => {
                cx.problem("store", format!("`{other}` is not \"memory\" or \"redis\""));
                None
            }
        };
        let snapshot_file = self.memory.snapshot_file.map(|f| cx.resolve(&f));
        let redis = matches!(store, Some(TicketStore::Redis(_)));
        if redis && snapshot_file.is_some() {
            cx.at("memory").problem(
                "snapshot_file",
                "only applies to store = \"memory\"; Redis keeps the tickets itself",
            );
        }
        if matches!(key, Some(None)) {
            if redis {
                cx.problem(
                    "key",
                    "the Redis store needs a registry key (the same on every node) to encrypt tickets and hash their ids; generate one with `cas-server keygen`",
                );
            } else if snapshot_file.is_some() {
                cx.problem(
                    "key",
                    "tickets.memory.snapshot_file needs a registry key to encrypt the snapshot (and to read it back after a restart); generate one with `cas-server keygen`",
                );
            }
        }
        Some(Tickets {
            tgt_idle_ttl: idle?,
            tgt_hard_ttl: hard?,
            st_ttl: st?,
            pt_ttl: pt?,
            reaper_interval: reaper?,
            store: store?,
            key: key?,
            snapshot_file,
        })
    }
}

/// Nodes sharing a Redis store must open each other's cookies and login forms, so the
/// keys of both must be configured, the same on every node. `cx` is the whole file.
pub(super) fn check_cluster_keys(tickets: &Tickets, tgc: &Tgc, login: &Login, cx: &mut Scope<'_>) {
    if !matches!(tickets.store, TicketStore::Redis(_)) {
        return;
    }
    if let TgcKeySource::KeyFile(path) = &tgc.keys
        && !path.exists()
    {
        cx.problem(
            "tgc.key_file",
            format!(
                "with store = \"redis\" every node needs the same TGC keys, and {} does not exist (this node would generate keys of its own); generate them once with `cas-server keygen` and give every node the same keys or file",
                path.display()
            ),
        );
    }
    if matches!(tgc.keys, TgcKeySource::Ephemeral) {
        cx.problem(
            "tgc.encryption_key",
            "with store = \"redis\" the TGC keys must be configured, identical on every node (generated keys differ per node and per restart); `cas-server keygen` prints a set",
        );
    }
    if login.flow_keys.is_empty() {
        cx.problem(
            "login.flow_key",
            "with store = \"redis\" the login form key must be configured, identical on every node (a form shown by one node is posted to another); `cas-server keygen` prints one",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{KEY, assert_problem, keys, load_text, load_with};
    use crate::config::{Source, TicketStore};

    #[test]
    fn ticket_mistakes_name_the_file_and_key() {
        let e =
            load_text("[tickets]\nst_ttl = \"ten seconds\"\ntgt_idle_ttl = \"9h\"\n").unwrap_err();
        assert_eq!(keys(&e), ["tickets.st_ttl", "tickets.tgt_hard_ttl"]);
        assert_problem(&e, "tickets.st_ttl", "\"PT8H\"");
        assert_problem(
            &e,
            "tickets.tgt_hard_ttl",
            "shorter than tickets.tgt_idle_ttl",
        );

        let e = load_text("[tickets]\nstore = \"memcached\"\nkey = \"short\"\n").unwrap_err();
        assert_eq!(keys(&e), ["tickets.key", "tickets.store"]);
        assert_problem(&e, "tickets.key", "must be 32 bytes");
    }

    #[test]
    fn a_snapshot_needs_a_key_and_the_memory_store() {
        let e =
            load_text("[tickets.memory]\nsnapshot_file = \"/var/lib/cas/tickets\"\n").unwrap_err();
        assert_eq!(keys(&e), vec!["tickets.key"]);
        assert!(e.problems[0].message.contains("snapshot"));
        let s = load_text(&format!(
            "[tickets]\nkey = \"{KEY}\"\n[tickets.memory]\nsnapshot_file = \"/var/lib/cas/tickets\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.tickets.snapshot_file.as_deref(),
            Some(std::path::Path::new("/var/lib/cas/tickets"))
        );
        assert!(matches!(s.tickets.store, TicketStore::Memory));
    }

    #[test]
    fn the_redis_store_needs_shared_keys_configured() {
        let e = load_text("[tickets]\nstore = \"redis\"\n").unwrap_err();
        assert_eq!(
            keys(&e),
            vec!["tickets.key", "tgc.encryption_key", "login.flow_key"]
        );
        assert!(e.problems[0].message.contains("cas-server keygen"));
        assert!(e.problems[1].message.contains("identical on every node"));

        let tgc = crate::tgc::TgcKeys::generate().to_config();
        let s = load_text(&format!(
            "[tgc]\n{tgc}[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\nurl = \"redis://cache.internal:6380/2\"\npassword = \"s3cret\"\npool_size = 8\n"
        ))
        .unwrap();
        let TicketStore::Redis(redis) = &s.tickets.store else {
            panic!("redis store");
        };
        assert_eq!(redis.pool_size, 8);
        assert!(redis.encrypt, "encrypted at rest by default");
        assert_eq!(redis.key_prefix, "cas:");
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "the password never prints"
        );
    }

    #[test]
    fn a_redis_node_needs_an_existing_tgc_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cas.toml");
        std::fs::write(
            &path,
            format!(
                "[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n"
            ),
        )
        .unwrap();
        let e = load_with(Source::File(&path), &[]).unwrap_err();
        assert_eq!(keys(&e), vec!["tgc.key_file"]);
        assert!(e.problems[0].message.contains("does not exist"), "{e}");

        std::fs::write(
            dir.path().join("tgc-keys.toml"),
            crate::tgc::TgcKeys::generate().to_config(),
        )
        .unwrap();
        let s = load_with(Source::File(&path), &[]).unwrap();
        assert!(matches!(
            s.tgc.keys,
            crate::config::TgcKeySource::KeyFile(_)
        ));
    }
}
