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
    /// On a cluster, the first primary's that is not `noeviction`, if any.
    pub async fn eviction_policy(&self) -> Option<String> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let answers = self
            .pool
            .run(|mut c| {
                let cmd = cmd.clone();
                async move { c.on_each_primary(&cmd).await }
            })
            .await
            .ok()?;
        let policies: Vec<String> = answers
            .into_iter()
            .filter_map(|(_, answer)| {
                let reply: Vec<String> = redis::FromRedisValue::from_redis_value(answer).ok()?;
                reply.get(1).cloned()
            })
            .collect();
        policies
            .iter()
            .find(|p| *p != "noeviction")
            .or(policies.first())
            .cloned()
    }

    /// Counts the keys of stored tickets on every primary, with SCAN, a batch per command.
    pub(super) async fn count_keys(&self) -> Result<usize, RegistryError> {
        let pattern = if self.cluster {
            format!("{}{{?}}t:*", self.prefix)
        } else {
            format!("{}t:*", self.prefix)
        };
        let scan = |cursor: u64| {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            cmd
        };
        let first = scan(0);
        let primaries = self
            .pool
            .run(|mut c| {
                let cmd = first.clone();
                async move { c.on_each_primary(&cmd).await }
            })
            .await?;
        let mut total = 0;
        for (node, answer) in primaries {
            let (mut cursor, keys): (u64, Vec<String>) =
                redis::FromRedisValue::from_redis_value(answer)
                    .map_err(|_| RegistryError::UnexpectedAnswer("scanning keys"))?;
            total += keys.len();
            while cursor != 0 {
                let cmd = scan(cursor);
                let (next, keys): (u64, Vec<String>) = self
                    .pool
                    .run(|mut c| {
                        let (cmd, node) = (cmd.clone(), node.clone());
                        async move { c.on_node(&node, &cmd).await }
                    })
                    .await?;
                total += keys.len();
                cursor = next;
            }
        }
        Ok(total)
    }

    /// One small write, as every login and SSO makes: a Redis out of memory (under
    /// `noeviction`) or a read-only replica refuses it.
    pub(super) async fn write_probe(&self) -> Result<(), RegistryError> {
        let name = format!("{}health", self.prefix);
        self.command::<()>(|| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&name).arg("1").arg("PX").arg(10_000);
            cmd
        })
        .await
        .map_err(|e| match e {
            RegistryError::Redis(e)
                if e.code() == Some("OOM")
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) =>
            {
                RegistryError::RefusesWrites(e)
            }
            other => other,
        })
    }

    /// The sessions of `space` due at `now`, a batch at a time.
    pub(super) async fn sweep_space(
        &self,
        space: &str,
        now: OffsetDateTime,
        swept: &mut Swept,
    ) -> Result<(), RegistryError> {
        for _ in 0..SWEEP_BATCHES {
            let due = self.lease_expired(space, now).await?;
            let batch = due.len();
            for hash in due {
                self.sweep_one(space, &hash, now, swept).await?;
            }
            if batch < SWEEP_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Sessions of `space` due at `now`, leased to this node for [`SWEEP_LEASE`].
    async fn lease_expired(
        &self,
        space: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, RegistryError> {
        let args = [
            unix_ms(now).to_string(),
            SWEEP_BATCH.to_string(),
            unix_ms(now + SWEEP_LEASE).to_string(),
        ];
        self.script(
            |s| &s.drain_expired,
            space,
            &[Self::expiry_key(space)],
            &args,
            true,
        )
        .await
    }

    /// One leased session: put back if it was used meanwhile (on another node, say), left
    /// alone if this node cannot read it, else removed with all it holds.
    async fn sweep_one(
        &self,
        space: &str,
        hash: &str,
        now: OffsetDateTime,
        swept: &mut Swept,
    ) -> Result<(), RegistryError> {
        match self.load_tgt(space, hash).await? {
            Loaded::Tgt(tgt) if !tgt.is_expired(now) => {
                let score = unix_ms(session_deadline(&tgt));
                let expiry = Self::expiry_key(space);
                self.command(|| {
                    let mut cmd = redis::cmd("ZADD");
                    cmd.arg(&expiry).arg(score).arg(hash);
                    cmd
                })
                .await
            }
            Loaded::Unreadable => Ok(()),
            Loaded::Tgt(_) | Loaded::Absent => {
                if let Some(tgt) = self.remove_by_hash(space, hash, None).await? {
                    swept.freed += 1 + tgt.issued.len();
                    swept.expired_sessions.push(tgt);
                }
                Ok(())
            }
        }
    }

    /// Whether the entries in Redis were written with this node's registry key. The first
    /// node to ask records a keyed check value; a node whose key differs is told, and says
    /// so in its log and on `/health`, and refuses logins, instead of silently seeing no
    /// session.
    ///
    /// After Redis lost its data the check value is gone too, and whoever asks first
    /// records theirs. A node that found another key before must not be that one: it
    /// would leave every rightly configured node DOWN. It records nothing until the check
    /// value has stayed absent for [`UNCLAIMED_GRACE`], time enough for the nodes that
    /// held the key to record it again (each does at its next health check or sweep).
    pub(super) async fn key_check(&self) -> Result<(), RegistryError> {
        let name = format!("{}keycheck", self.prefix);
        let ours = self.sealer.tag("keycheck", "cas-server registry key");
        let may_claim = !self.key_mismatch.load(Ordering::Relaxed) || self.unclaimed_long_enough();
        let mut args = vec![ours, KEY_CHECK_TTL_MS.to_string()];
        if !may_claim {
            args.push("0".to_owned());
        }
        let matches: i64 = self
            .script(
                |s| &s.claim,
                &self.prefix,
                std::slice::from_ref(&name),
                &args,
                true,
            )
            .await?;
        self.note_unclaimed(matches == -1);
        if matches == 1 {
            if self.key_mismatch.swap(false, Ordering::Relaxed) {
                tracing::info!(prefix = %self.prefix, "ticket registry: redis holds this node's tickets.key again");
            }
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

    /// Whether the check value has been seen absent, without this node recording it, for
    /// [`UNCLAIMED_GRACE`].
    fn unclaimed_long_enough(&self) -> bool {
        self.unclaimed_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|since| since.elapsed() >= UNCLAIMED_GRACE)
    }

    fn note_unclaimed(&self, absent: bool) {
        let mut since = self
            .unclaimed_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (absent, *since) {
            (true, None) => *since = Some(std::time::Instant::now()),
            (false, _) => *since = None,
            (true, Some(_)) => {}
        }
    }

    /// Removes the session stored under `hash` with everything it issued. With `outbox`
    /// (a logout), the removal is also kept in the outbox until [`Self::acknowledge`],
    /// falling due at that time.
    pub(super) async fn remove_by_hash(
        &self,
        space: &str,
        hash: &str,
        outbox: Option<OffsetDateTime>,
    ) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let keys = [
            Self::ticket_key(space, hash),
            Self::history_key(space, hash),
            Self::pgts_key(space, hash),
            Self::expiry_key(space),
            Self::outbox_key(space),
            Self::outbox_queue_key(space),
        ];
        let due = outbox.map_or_else(|| "0".to_owned(), |at| unix_ms(at).to_string());
        let args = [hash.to_owned(), format!("{space}t:"), due];
        let reply: Option<Vec<String>> = self
            .script(|s| &s.remove_tgt, space, &keys, &args, false)
            .await?;
        Ok(reply.and_then(|reply| self.removed(hash, reply)))
    }

    /// The session in a removal's reply, with the tickets it issued.
    fn removed(&self, hash: &str, mut reply: Vec<String>) -> Option<TicketGrantingTicket> {
        if reply.len() < 3 {
            return None;
        }
        let history = reply.split_off(3);
        let mut tgt = self.open::<TicketGrantingTicket>(&reply[0], TGT, hash)?;
        self.apply_last_use(&mut tgt, hash, Some(&reply[1]), Some(&reply[2]));
        tgt.issued = history
            .iter()
            .filter_map(|entry| {
                let (_, sealed) = entry.split_once('.')?;
                self.open::<IssuedTicket>(sealed, "issued", hash)
            })
            .collect();
        Some(tgt)
    }

    /// The single logout of these removals was taken care of: out of the outbox.
    pub(super) async fn acknowledge(
        &self,
        space: &str,
        hashes: &[String],
    ) -> Result<(), RegistryError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let (outbox, queue) = (Self::outbox_key(space), Self::outbox_queue_key(space));
        self.pool
            .run(|mut c| {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hdel(&outbox, hashes)
                    .ignore()
                    .zrem(&queue, hashes)
                    .ignore();
                async move { pipe.query_async::<()>(&mut c).await }
            })
            .await
    }

    /// Removals whose answer was lost, fallen due at `now`: leased to this node, decoded,
    /// and acknowledged (their messages are queued next, on this node).
    pub(super) async fn orphaned_logouts(
        &self,
        space: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<TicketGrantingTicket>, RegistryError> {
        let args = [
            unix_ms(now).to_string(),
            SWEEP_BATCH.to_string(),
            unix_ms(now + SWEEP_LEASE).to_string(),
        ];
        let due: Vec<String> = self
            .script(
                |s| &s.drain_expired,
                space,
                &[Self::outbox_queue_key(space)],
                &args,
                true,
            )
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let outbox = Self::outbox_key(space);
        let entries: Vec<Option<String>> = self
            .command(|| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(&outbox).arg(&due);
                cmd
            })
            .await?;
        let sessions = due
            .iter()
            .zip(entries)
            .filter_map(|(hash, entry)| {
                let reply: Vec<String> = serde_json::from_str(&entry?).ok()?;
                self.removed(hash, reply)
            })
            .collect();
        self.acknowledge(space, &due).await?;
        Ok(sessions)
    }
}
