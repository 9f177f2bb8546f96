//! Sessions and service tickets in Redis: a new session with its first ticket, the
//! arguments of the script that issues one under a session, the reading of its answer,
//! and redeeming one with its session, each in one round trip.

use super::*;

impl RedisRegistry {
    /// The session and its first ticket in one `MULTI`: a session this new is live and
    /// holds nothing else, so the ticket needs none of `ADD_TICKET`'s checks.
    pub(super) async fn store_session(
        &self,
        tgt: TicketGrantingTicket,
        first: Option<(ServiceTicket, LogoutTarget)>,
    ) -> Result<(), RegistryError> {
        // A node that cannot read the others' sessions must not start its own: they would
        // work on this node only, and look like lost sessions everywhere else.
        if self.key_mismatch.load(Ordering::Relaxed) {
            return Err(RegistryError::KeyMismatch);
        }
        let hash = self.sealer.hash_id(&tgt.id);
        // Created `now` by the caller: its last use is its creation.
        let now = tgt.last_used_at;
        let deadline = session_deadline(&tgt);
        let ttl = ms_until(deadline + self.expiry_margin, now);
        let sealed = self.seal(&tgt, TGT, &hash);
        let space = self.session_space(&tgt.id);
        let (key, expiry) = (Self::ticket_key(&space, &hash), Self::expiry_key(&space));
        let used = unix_ms(tgt.last_used_at);
        let hard = unix_ms(tgt.expiration.hard_deadline(tgt.authenticated_at));
        let idle = tgt
            .expiration
            .idle
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let score = unix_ms(deadline);
        let tag = self.last_use_tag(&hash, used);
        let wait = self.replicas;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(&key, &[("k", TGT), ("d", &sealed), ("t", &tag)])
            .ignore()
            .hset_multiple(&key, &[("u", used), ("a", hard), ("i", idle)])
            .ignore()
            .pexpire(&key, ttl)
            .ignore()
            .zadd(&expiry, &hash, score)
            .ignore();
        if let Some((ticket, logout)) = first {
            let (keys, args, _) = self.ticket_script(&ticket, logout, now, false);
            let [_, history, _, _, ticket_key] = keys;
            let [_, _, _, _, entry, sealed_ticket, ticket_ttl, ..] = args;
            let ticket_ttl: i64 = ticket_ttl.parse().unwrap_or(1);
            pipe.hset_multiple(
                &ticket_key,
                &[("k", ST), ("d", &sealed_ticket), ("s", &hash)],
            )
            .ignore()
            .pexpire(&ticket_key, ticket_ttl)
            .ignore()
            .rpush(&history, &entry)
            .ignore()
            .pexpire(&history, ttl)
            .ignore();
        }
        let acked = self
            .pool
            .run(|mut c| {
                let (pipe, key) = (pipe.clone(), key.clone());
                async move {
                    pipe.query_async::<()>(&mut c).await?;
                    // On the same connection: WAIT counts the replicas that have this
                    // connection's writes so far, ours included.
                    match wait {
                        Some((wanted, timeout_ms)) => {
                            c.wait_for_replicas(&key, wanted, timeout_ms).await
                        }
                        None => Ok(0),
                    }
                }
            })
            .await?;
        match wait {
            Some((wanted, _)) if acked < wanted => {
                Err(RegistryError::NotReplicated { acked, wanted })
            }
            _ => Ok(()),
        }
    }

    /// The keys and arguments of `ADD_TICKET` for `ticket`, and its session's hash;
    /// `with_session` to have the session sent back.
    pub(super) fn ticket_script(
        &self,
        ticket: &ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
        with_session: bool,
    ) -> ([String; 5], [String; 11], String) {
        let tgt_hash = self.sealer.hash_id(&ticket.tgt_id);
        let st_hash = self.sealer.hash_id(&ticket.id);
        // The destination in clear (keyed), so that the script can tell repeats apart
        // without opening the entries.
        let destination = match &logout {
            LogoutTarget::None => "-".to_owned(),
            LogoutTarget::BackChannel { url } => self
                .sealer
                .tag("destination", &format!("b\0{}\0{url}", ticket.service)),
            LogoutTarget::FrontChannel { url } => self
                .sealer
                .tag("destination", &format!("f\0{}\0{url}", ticket.service)),
        };
        let entry = format!(
            "{st_hash}:{destination}.{}",
            self.seal(
                &IssuedTicket {
                    ticket_id: ticket.id.clone(),
                    service: ticket.service.clone(),
                    logout,
                },
                "issued",
                &tgt_hash,
            )
        );
        let sealed = self.seal(&ticket, ST, &st_hash);
        // Kept a little past its expiry, so a late validation is told "expired", as in
        // memory, rather than "not recognised".
        let st_ttl = ms_until(
            ticket.expiration.hard_deadline(ticket.created_at) + Duration::from_secs(60),
            now,
        );
        let space = self.session_space(&ticket.tgt_id);
        let keys = [
            Self::ticket_key(&space, &tgt_hash),
            Self::history_key(&space, &tgt_hash),
            Self::pgts_key(&space, &tgt_hash),
            Self::expiry_key(&space),
            Self::ticket_key(&space, &st_hash),
        ];
        let slide = if ticket.grant == Grant::Service {
            "1"
        } else {
            "0"
        };
        let tag = self.last_use_tag(&tgt_hash, unix_ms(now));
        let args: [String; 11] = [
            unix_ms(now).to_string(),
            slide.to_owned(),
            self.margin_ms().to_string(),
            tgt_hash.clone(),
            entry,
            sealed,
            st_ttl.to_string(),
            MAX_ISSUED.to_string(),
            tag,
            format!("{space}t:"),
            if with_session { "1" } else { "0" }.to_owned(),
        ];
        (keys, args, tgt_hash)
    }

    /// `ADD_TICKET` with the session sent back, checked here (see
    /// [`TicketRegistry::issue_under_session`]): single sign-on in one round trip.
    pub(super) async fn issue_sso(
        &self,
        ticket: ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
        accept: &(dyn for<'t> Fn(&'t TicketGrantingTicket) -> bool + Send + Sync),
    ) -> Result<Option<(Arc<TicketGrantingTicket>, Added)>, RegistryError> {
        let (keys, args, tgt_hash) = self.ticket_script(&ticket, logout, now, true);
        let space = self.session_space(&ticket.tgt_id);
        let reply: redis::Value = self
            .script(|s| &s.add_ticket, &space, &keys, &args, true)
            .await?;
        let (added, session) = match reply {
            redis::Value::Array(mut reply) if reply.len() == 5 => {
                let session = reply.split_off(2);
                let session: Vec<String> =
                    redis::FromRedisValue::from_redis_value(redis::Value::Array(session))
                        .map_err(|_| RegistryError::UnexpectedAnswer("issuing a ticket"))?;
                (
                    self.added(redis::Value::Array(reply), &tgt_hash)?,
                    Some(session),
                )
            }
            // Sent again after a lost answer: the ticket was there already.
            redis::Value::Int(1) => (Added::Recorded, None),
            _ => return Ok(None),
        };
        let tgt = match session.as_deref() {
            Some([sealed, used, tag]) => self
                .open::<TicketGrantingTicket>(sealed, TGT, &tgt_hash)
                .map(|mut tgt| {
                    self.apply_last_use(&mut tgt, &tgt_hash, Some(used), Some(tag));
                    tgt
                })
                .filter(|tgt| tgt.id == ticket.tgt_id && !tgt.is_expired(now)),
            _ => self.live_tgt(&ticket.tgt_id, now).await?,
        };
        match tgt {
            Some(tgt) if accept(&tgt) => Ok(Some((Arc::new(tgt), added))),
            _ => {
                let (used, tag) = match session.as_deref() {
                    Some([_, used, tag]) => (used.clone(), tag.clone()),
                    _ => (String::new(), String::new()),
                };
                let undo_keys = [keys[0].clone(), keys[1].clone(), keys[4].clone()];
                let undo_args = [args[4].clone(), args[0].clone(), args[8].clone(), used, tag];
                self.script::<i64>(|s| &s.undo_ticket, &space, &undo_keys, &undo_args, true)
                    .await?;
                Ok(None)
            }
        }
    }

    /// What `ADD_TICKET` answered, as [`Added`].
    pub(super) fn added(
        &self,
        added: redis::Value,
        tgt_hash: &str,
    ) -> Result<Added, RegistryError> {
        Ok(match added {
            redis::Value::Int(1) => Added::Recorded,
            redis::Value::Array(reply) => match reply.as_slice() {
                [redis::Value::Int(1), redis::Value::BulkString(_)] => Added::Recorded,
                [redis::Value::Int(2), redis::Value::BulkString(entry)] => {
                    let forgotten = std::str::from_utf8(entry)
                        .ok()
                        .and_then(|entry| entry.split_once('.'))
                        .and_then(|(_, sealed)| self.open(sealed, "issued", tgt_hash));
                    match forgotten {
                        Some(forgotten) => Added::Forgot(forgotten),
                        None => Added::Recorded,
                    }
                }
                _ => return Err(RegistryError::UnexpectedAnswer("adding a ticket")),
            },
            _ => Added::SessionEnded,
        })
    }

    /// Redeems a one-use ticket; with it, for a valid one, what the store holds of its
    /// session: `None` if the ticket does not name it, `[]` if it has gone, else the
    /// sealed session, its last use and that one's tag.
    pub(super) async fn redeem_reply(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<(Redeemed, Option<Vec<String>>), RegistryError> {
        let hash = self.sealer.hash_id(id);
        let space = self.session_space(id);
        let keys = [Self::ticket_key(&space, &hash)];
        let args = [format!("{space}t:")];
        let reply: Option<Vec<String>> = self
            .script(|s| &s.redeem, &space, &keys, &args, false)
            .await?;
        let Some(mut reply) = reply else {
            return Ok((Redeemed::Missing, None));
        };
        if reply.len() < 2 || reply[0] != ST {
            return Ok((Redeemed::WrongKind, None));
        }
        let session = reply.split_off(2);
        let Some(st) = self
            .open::<ServiceTicket>(&reply[1], ST, &hash)
            .filter(|st| st.id == id)
        else {
            return Ok((Redeemed::Missing, None));
        };
        let session = match session.as_slice() {
            [] => None,
            [gone] if gone.is_empty() => Some(Vec::new()),
            _ => Some(session),
        };
        Ok(if st.is_expired(now) {
            (Redeemed::Expired(st), None)
        } else {
            (Redeemed::Valid(st), session)
        })
    }
}
