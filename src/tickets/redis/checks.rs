//! What this node checks of Redis and of the other nodes: the registry key they share,
//! Redis' eviction policy, and the expiry index that the reaper drains.

use time::OffsetDateTime;

use super::*;

impl RedisRegistry {
    /// Whether the key check value in Redis is this node's, without recording one if there
    /// is none (`None`): for `check-config --probe`, which must not claim an empty Redis
    /// for a key that may be the wrong one.
    pub async fn key_matches(&self) -> Result<Option<bool>, RegistryError> {
        let name = format!("{}keycheck", self.prefix);
        let held: Option<String> = self
            .command(|| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(&name);
                cmd
            })
            .await?;
        Ok(held.map(|h| h == self.sealer.tag("keycheck", "cas-server registry key")))
    }

    /// Redis' `maxmemory-policy`, if this user may read it: anything but `noeviction`
    /// lets Redis drop live sessions, used login forms and logout histories under memory
    /// pressure. For `check-config --probe`.
    pub async fn eviction_policy(&self) -> Option<String> {
        let reply: Vec<String> = self
            .command(|| {
                let mut cmd = redis::cmd("CONFIG");
                cmd.arg("GET").arg("maxmemory-policy");
                cmd
            })
            .await
            .ok()?;
        reply.get(1).cloned()
    }

    /// Sessions due at `now`, leased to this node for [`SWEEP_LEASE`].
    pub(super) async fn lease_expired(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, RegistryError> {
        let args = [
            unix_ms(now).to_string(),
            SWEEP_BATCH.to_string(),
            unix_ms(now + SWEEP_LEASE).to_string(),
        ];
        self.script(|s| &s.drain_expired, &[self.expiry_key()], &args, false)
            .await
    }

    /// One leased session: put back if it was used meanwhile (on another node, say), left
    /// alone if this node cannot read it, else removed with all it holds.
    pub(super) async fn sweep_one(
        &self,
        hash: &str,
        now: OffsetDateTime,
        swept: &mut Swept,
    ) -> Result<(), RegistryError> {
        match self.load_tgt(hash).await? {
            Loaded::Tgt(tgt) if !tgt.is_expired(now) => {
                let score = unix_ms(session_deadline(&tgt));
                let expiry = self.expiry_key();
                self.command(|| {
                    let mut cmd = redis::cmd("ZADD");
                    cmd.arg(&expiry).arg(score).arg(hash);
                    cmd
                })
                .await
            }
            Loaded::Unreadable => Ok(()),
            Loaded::Tgt(_) | Loaded::Absent => {
                if let Some(tgt) = self.remove_by_hash(hash).await? {
                    swept.freed += 1 + tgt.issued.len();
                    swept.expired_sessions.push(tgt);
                }
                Ok(())
            }
        }
    }

    /// Whether the entries in Redis were written with this node's registry key. The first
    /// node to ask records a keyed check value; a node whose key differs is told, and says
    /// so in its log and on `/health`, instead of silently seeing no session.
    pub(super) async fn key_check(&self) -> Result<(), RegistryError> {
        let name = format!("{}keycheck", self.prefix);
        let ours = self.sealer.tag("keycheck", "cas-server registry key");
        let args = [ours, KEY_CHECK_TTL_MS.to_string()];
        let matches: i64 = self
            .script(|s| &s.claim, std::slice::from_ref(&name), &args, true)
            .await?;
        if matches == 1 {
            self.key_mismatch.store(false, Ordering::Relaxed);
            return Ok(());
        }
        if !self.key_mismatch.swap(true, Ordering::Relaxed) {
            tracing::error!(
                prefix = %self.prefix,
                check_key = %name,
                "ticket registry: the tickets in redis were written with another tickets.key; this node cannot read them. Every node needs the same key; if the key was changed on purpose on every node, delete the check key in redis"
            );
        }
        Err(RegistryError::KeyMismatch)
    }

    /// Removes the session stored under `hash` with everything it issued.
    pub(super) async fn remove_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let keys = [
            self.ticket_key(hash),
            self.history_key(hash),
            self.pgts_key(hash),
            self.expiry_key(),
        ];
        let args = [hash.to_owned(), format!("{}t:", self.prefix)];
        let reply: Option<Vec<String>> =
            self.script(|s| &s.remove_tgt, &keys, &args, false).await?;
        let Some(mut reply) = reply.filter(|r| r.len() >= 3) else {
            return Ok(None);
        };
        let history = reply.split_off(3);
        let Some(mut tgt) = self.open::<TicketGrantingTicket>(&reply[0], TGT, hash) else {
            return Ok(None);
        };
        self.apply_last_use(&mut tgt, hash, Some(&reply[1]), Some(&reply[2]));
        tgt.issued = history
            .iter()
            .filter_map(|entry| {
                let (_, sealed) = entry.split_once('.')?;
                self.open::<IssuedTicket>(sealed, "issued", hash)
            })
            .collect();
        Ok(Some(tgt))
    }
}
