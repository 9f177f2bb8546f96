//! `[tickets.memory] snapshot_file`: a single node keeps its sessions across a graceful
//! restart. On shutdown the live tickets are sealed with the registry key and written
//! (mode 0600, atomically); at startup they are read back, expired ones dropped, and the
//! file deleted, so that a crash later can never bring back sessions that have since
//! ended. A snapshot that cannot be read (corrupt, another key, another version) is
//! reported and ignored: the server starts empty rather than not at all.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::MemoryRegistry;
use super::memory::Contents;
use super::sealing::TicketSealer;

const CONTEXT: &str = "cas-server ticket snapshot v1";

#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    sealer: TicketSealer,
}

impl SnapshotFile {
    pub fn new(path: PathBuf, key: &[u8; 32]) -> Self {
        Self {
            path,
            sealer: TicketSealer::new(key, true),
        }
    }

    fn fault(&self, what: SnapshotFault) -> SnapshotError {
        SnapshotError {
            path: self.path.clone(),
            what,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a snapshot could be written at all (checked at startup, so that a wrong
    /// path is known then rather than at shutdown).
    pub fn check_writable(&self) -> Result<(), SnapshotError> {
        let probe = self.path.with_extension("probe");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| self.fault(SnapshotFault::NotWritable(e)))
    }

    /// Writes the live tickets; returns how many.
    pub fn save(
        &self,
        registry: &MemoryRegistry,
        now: OffsetDateTime,
    ) -> Result<usize, SnapshotError> {
        let contents = registry.export(now);
        let count = contents.tickets.len();
        let json =
            serde_json::to_vec(&contents).map_err(|e| self.fault(SnapshotFault::Encode(e)))?;
        let sealed = self.sealer.seal(&json, CONTEXT);
        let tmp = self.path.with_extension("tmp");
        let written = (|| {
            // A leftover (or planted) temporary file goes first: `create_new` then makes a
            // fresh one with our mode and never follows a symbolic link.
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(sealed.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename itself must reach the disk before we report success.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.fault(SnapshotFault::Write(e))
        })?;
        Ok(count)
    }

    /// Restores the snapshot, if there is one, and deletes it. `Ok(None)` when there is
    /// no file; `Err` says why a file was ignored (it is then left in place for the
    /// operator, and overwritten at the next graceful shutdown).
    pub fn load(
        &self,
        registry: &MemoryRegistry,
        now: OffsetDateTime,
    ) -> Result<Option<usize>, SnapshotError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.fault(SnapshotFault::Read(e))),
        };
        let contents: Contents = self
            .sealer
            .open(text.trim(), CONTEXT)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| self.fault(SnapshotFault::Foreign))?;
        // Deleted before anything is restored: a snapshot that stayed behind could bring
        // back, after a crash, sessions that have ended since.
        std::fs::remove_file(&self.path).map_err(|e| self.fault(SnapshotFault::Delete(e)))?;
        Ok(Some(registry.import(contents, now)))
    }
}

/// A snapshot that cannot be written or read, and why.
#[derive(Debug, thiserror::Error)]
#[error("ticket snapshot {}", path.display())]
pub struct SnapshotError {
    path: std::path::PathBuf,
    #[source]
    what: SnapshotFault,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFault {
    #[error("cannot write beside it")]
    NotWritable(#[source] std::io::Error),
    #[error("cannot encode the tickets")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write it")]
    Write(#[source] std::io::Error),
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    #[error(
        "it is not a snapshot sealed with this registry key (corrupt, or written with another tickets.key); ignored"
    )]
    Foreign,
    #[error("cannot delete it after reading it; not restored")]
    Delete(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::clock::Clock as _;
    use crate::tickets::{
        ExpirationPolicy, LogoutTarget, Principal, ServiceTicket, TicketGrantingTicket,
        TicketRegistry,
    };

    fn session(now: OffsetDateTime, idle: u64) -> TicketGrantingTicket {
        TicketGrantingTicket::new(
            Principal {
                id: "alice".into(),
                attributes: BTreeMap::new(),
            },
            now,
            ExpirationPolicy::sliding(Duration::from_secs(idle), Duration::from_secs(600)),
            false,
        )
    }

    #[tokio::test]
    async fn live_tickets_survive_a_round_trip_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("tickets.snapshot"), &[9; 32]);
        let t0 = crate::clock::SystemClock.now();
        let before = MemoryRegistry::new();
        let long = session(t0, 300);
        let short = session(t0, 5);
        before.add_tgt(long.clone()).await.unwrap();
        before.add_tgt(short.clone()).await.unwrap();
        let st = ServiceTicket::new(
            &long.id,
            "https://a/",
            t0,
            ExpirationPolicy::fixed(Duration::from_secs(10)),
            true,
        );
        before
            .add_service_ticket(st.clone(), LogoutTarget::None, t0)
            .await
            .unwrap();
        assert!(
            before
                .claim_once("LT-1", t0 + Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert_eq!(file.save(&before, t0).unwrap(), 3);

        let raw = std::fs::read_to_string(file.path()).unwrap();
        assert!(!raw.contains("alice") && !raw.contains(&long.id) && !raw.contains(&st.id));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let later = t0 + Duration::from_secs(20);
        let after = MemoryRegistry::new();
        assert_eq!(
            file.load(&after, later).unwrap(),
            Some(1),
            "only the long session"
        );
        assert!(after.get_tgt(&long.id, later).await.unwrap().is_some());
        assert!(after.get_tgt(&short.id, later).await.unwrap().is_none());
        assert!(
            !after
                .claim_once("LT-1", t0 + Duration::from_secs(60))
                .await
                .unwrap(),
            "a used login form stays used"
        );
        assert!(!file.path().exists(), "deleted once restored");
        assert_eq!(file.load(&after, later).unwrap(), None);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn saving_never_follows_a_planted_link_or_keeps_a_wide_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets.snapshot");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, path.with_extension("tmp")).unwrap();
        let now = crate::clock::SystemClock.now();
        let registry = MemoryRegistry::new();
        registry.add_tgt(session(now, 300)).await.unwrap();
        let file = SnapshotFile::new(path.clone(), &[3; 32]);

        file.save(&registry, now).unwrap();

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::write(path.with_extension("tmp"), "old").unwrap();
        std::fs::set_permissions(
            path.with_extension("tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        file.save(&registry, now).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(file.check_writable().is_ok());
        assert!(
            SnapshotFile::new(dir.path().join("missing/dir/snap"), &[3; 32])
                .check_writable()
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_foreign_or_corrupt_snapshot_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets.snapshot");
        let now = crate::clock::SystemClock.now();
        let registry = MemoryRegistry::new();
        registry.add_tgt(session(now, 300)).await.unwrap();
        SnapshotFile::new(path.clone(), &[1; 32])
            .save(&registry, now)
            .unwrap();
        let other = SnapshotFile::new(path.clone(), &[2; 32]);
        let fresh = MemoryRegistry::new();
        let err = other.load(&fresh, now).unwrap_err();
        assert!(
            crate::telemetry::Chain(&err)
                .to_string()
                .contains("another tickets.key"),
            "{err}"
        );
        assert_eq!(fresh.count().await.unwrap(), 0);
        std::fs::write(&path, "garbage").unwrap();
        assert!(other.load(&fresh, now).is_err());
        assert!(path.exists());
    }
}
