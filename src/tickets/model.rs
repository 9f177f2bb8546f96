//! The tickets themselves: plain serde structs linked by id, never by pointer, so that a
//! networked registry can store them as they are.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::expiration::ExpirationPolicy;
use crate::crypto::random_base62;

pub use crate::auth::Principal;

/// TKT-05: ST and PT ids fit in 32 characters (`ST-` + 29 base62 ≈ 172 bits).
const SERVICE_TICKET_RANDOM_LEN: usize = 29;
const TGT_RANDOM_LEN: usize = 40;
/// TKT-05: PGT and PGTIOU stay within 64 characters.
const PGT_RANDOM_LEN: usize = 56;

/// New ids: `PREFIX-<base62 from the OS CSPRNG>` (TKT-01, TKT-02).
pub fn new_tgt_id() -> String {
    format!("TGT-{}", random_base62(TGT_RANDOM_LEN))
}

/// The session's shard (see [`shard_of`]) and fresh randomness: 28 base62 characters
/// after it, about 166 bits.
pub fn new_service_ticket_id(tgt_id: &str) -> String {
    format!(
        "ST-{}{}",
        shard_of(tgt_id),
        random_base62(SERVICE_TICKET_RANDOM_LEN - 1)
    )
}

pub fn new_proxy_ticket_id(tgt_id: &str) -> String {
    format!(
        "PT-{}{}",
        shard_of(tgt_id),
        random_base62(SERVICE_TICKET_RANDOM_LEN - 1)
    )
}

pub fn new_pgt_id(tgt_id: &str) -> String {
    format!(
        "PGT-{}{}",
        shard_of(tgt_id),
        random_base62(PGT_RANDOM_LEN - 1)
    )
}

/// The shard of a session and of every ticket issued under it: the first character after
/// the prefix, random for a session and copied into its tickets, so that a store split
/// over several servers (Redis Cluster) keeps a session with all its tickets and finds
/// the place of a ticket from its id alone. One of 62 values, shared by that fraction of
/// all sessions: it tells nothing about the session. `'0'` for an id without one (made
/// up, or not base62), where nothing is found.
pub fn shard_of(id: &str) -> char {
    id.split_once('-')
        .and_then(|(_, rest)| rest.chars().next())
        .filter(char::is_ascii_alphanumeric)
        .unwrap_or('0')
}

/// PCB-09: an IOU is independent randomness, never derived from the PGT.
pub fn new_pgt_iou() -> String {
    format!("PGTIOU-{}", random_base62(PGT_RANDOM_LEN - 3))
}

/// Where and how a service learns that the session behind one of its tickets ended,
/// decided from the service's policy when the ticket is issued (SLO-07, SVC-08).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogoutTarget {
    /// A POST from the server (SLO-02).
    BackChannel { url: String },
    /// A request from the user's browser, driven by the logout page (SLO-09).
    FrontChannel { url: String },
    /// The service asked not to be told.
    None,
}

/// A ticket handed out under an SSO session, remembered for single logout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedTicket {
    pub ticket_id: String,
    pub service: String,
    pub logout: LogoutTarget,
}

impl IssuedTicket {
    /// Whether single logout would tell the same application at the same address.
    pub fn same_destination(&self, other: &Self) -> bool {
        self.service == other.service && self.logout == other.logout
    }
}

/// The SSO session (TKT-08).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketGrantingTicket {
    pub id: String,
    pub principal: Principal,
    /// When the user presented primary credentials.
    #[serde(with = "time::serde::rfc3339")]
    pub authenticated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    /// A remember-me (long-term) session (P3-03).
    pub remember_me: bool,
    pub expiration: ExpirationPolicy,
    pub issued: Vec<IssuedTicket>,
    /// PGTs granted under this session; they die with it (TKT-06, LOGOUT-02).
    #[serde(default)]
    pub proxy_granting: Vec<String>,
}

impl TicketGrantingTicket {
    pub fn new(
        principal: Principal,
        now: OffsetDateTime,
        expiration: ExpirationPolicy,
        remember_me: bool,
    ) -> Self {
        Self {
            id: new_tgt_id(),
            principal,
            authenticated_at: now,
            last_used_at: now,
            remember_me,
            expiration,
            issued: Vec::new(),
            proxy_granting: Vec::new(),
        }
    }

    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiration
            .is_expired(self.authenticated_at, self.last_used_at, now)
    }

    /// Remembers a ticket for single logout and for removal with the session. Every
    /// ticket counts (SLO-06 [REC]: each application session is told, even two behind
    /// one URL), up to [`MAX_ISSUED`], so a session that asks for tickets in a loop cannot
    /// grow without bound. When full, what is let go first is what single logout can
    /// spare: the oldest repeat of a destination (its application is still told through
    /// the newer one), then the oldest entry that tells no one. Only when every entry is
    /// a distinct destination is the oldest forgotten; it is returned, so the caller can
    /// log and count an application that will not hear of the logout.
    pub fn record_issued(&mut self, issued: IssuedTicket) -> Option<IssuedTicket> {
        // Most sessions only ever visit one service: room for exactly one (80 bytes)
        // rather than the four a first push would reserve.
        if self.issued.is_empty() {
            self.issued.reserve_exact(1);
        }
        self.issued.push(issued);
        if self.issued.len() <= MAX_ISSUED {
            return None;
        }
        let spare = |i: usize| {
            let entry = &self.issued[i];
            self.issued[i + 1..]
                .iter()
                .any(|later| later.same_destination(entry))
        };
        let at = (0..self.issued.len()).find(|&i| spare(i)).or_else(|| {
            self.issued
                .iter()
                .position(|e| e.logout == LogoutTarget::None)
        });
        match at {
            Some(at) => {
                self.issued.remove(at);
                None
            }
            None => Some(self.issued.remove(0)),
        }
    }

    /// Remembers a PGT; returns the oldest one when more than [`MAX_PGTS`] are held,
    /// which the caller must delete (a PGT the session forgot could outlive a logout).
    pub fn record_pgt(&mut self, id: String) -> Option<String> {
        self.proxy_granting.push(id);
        (self.proxy_granting.len() > MAX_PGTS).then(|| self.proxy_granting.remove(0))
    }
}

/// Tickets remembered per session for single logout.
pub const MAX_ISSUED: usize = 64;
/// Proxy-granting tickets alive at once per session.
pub const MAX_PGTS: usize = 16;

/// A proxy-granting ticket (§3.3): multi-use, alive exactly as long as its TGT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyGrantingTicket {
    pub id: String,
    pub tgt_id: String,
    /// The service that validated with `pgtUrl` and now holds this PGT.
    pub service: String,
    /// The proxy chain this PGT extends, most recent (its own `pgtUrl`) first.
    pub proxies: Vec<String>,
    /// The services whose PGTs the chain went through before this one, most recent
    /// first: each must still be allowed to proxy whenever the chain is used.
    #[serde(default)]
    pub proxied_by: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl ProxyGrantingTicket {
    pub fn new(tgt_id: &str, service: &str, proxies: Vec<String>, now: OffsetDateTime) -> Self {
        Self {
            id: new_pgt_id(tgt_id),
            tgt_id: tgt_id.to_owned(),
            service: service.to_owned(),
            proxies,
            proxied_by: Vec::new(),
            created_at: now,
        }
    }
}

/// How a ticket for a service was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// A service ticket from `/login`.
    Service,
    /// A proxy ticket from `/proxy`.
    Proxy,
}

/// A one-use ticket for one service (ST, and PT once proxying lands).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceTicket {
    pub id: String,
    pub tgt_id: String,
    /// The `service` exactly as given to `/login` (decoded once, GEN-02).
    pub service: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub expiration: ExpirationPolicy,
    /// Issued in the same request in which primary credentials were presented (P3-04).
    pub from_new_login: bool,
    pub grant: Grant,
    /// Proxy chain, most recent first (PVAL-02); empty for service tickets.
    pub proxies: Vec<String>,
    /// The services whose PGTs issued this ticket, most recent first; empty for service
    /// tickets. Each must still be allowed to proxy when the ticket is validated.
    #[serde(default)]
    pub proxied_by: Vec<String>,
}

impl ServiceTicket {
    pub fn new(
        tgt_id: &str,
        service: &str,
        now: OffsetDateTime,
        expiration: ExpirationPolicy,
        from_new_login: bool,
    ) -> Self {
        Self {
            id: new_service_ticket_id(tgt_id),
            tgt_id: tgt_id.to_owned(),
            service: service.to_owned(),
            created_at: now,
            expiration,
            from_new_login,
            grant: Grant::Service,
            proxies: Vec::new(),
            proxied_by: Vec::new(),
        }
    }

    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiration
            .is_expired(self.created_at, self.created_at, now)
    }

    /// A proxy ticket (§3.2) for `service`, carrying the PGT's chain (PVAL-02).
    pub fn proxy(
        pgt: &ProxyGrantingTicket,
        service: &str,
        now: OffsetDateTime,
        expiration: ExpirationPolicy,
    ) -> Self {
        Self {
            id: new_proxy_ticket_id(&pgt.tgt_id),
            tgt_id: pgt.tgt_id.clone(),
            service: service.to_owned(),
            created_at: now,
            expiration,
            from_new_login: false,
            grant: Grant::Proxy,
            proxies: pgt.proxies.clone(),
            proxied_by: std::iter::once(pgt.service.clone())
                .chain(pgt.proxied_by.iter().cloned())
                .collect(),
        }
    }
}

/// Everything a registry stores, tagged by kind so that a ticket presented where another
/// kind is expected is refused by what it is, not by its prefix (TKT-09).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ticket {
    Tgt(TicketGrantingTicket),
    Service(ServiceTicket),
    ProxyGranting(ProxyGrantingTicket),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_session_remembers_a_bounded_number_of_tickets() {
        let mut tgt = TicketGrantingTicket::new(
            Principal {
                id: "a".into(),
                attributes: BTreeMap::new(),
            },
            OffsetDateTime::UNIX_EPOCH,
            ExpirationPolicy::fixed(std::time::Duration::from_secs(60)),
            false,
        );
        let issued = |n: usize, service: &str| IssuedTicket {
            ticket_id: format!("ST-{n}"),
            service: service.into(),
            logout: LogoutTarget::None,
        };
        for n in 0..3 {
            tgt.record_issued(issued(n, "https://same.example/"));
        }
        assert_eq!(
            tgt.issued.len(),
            3,
            "every ticket, even for one service URL"
        );
        for n in 0..1000 {
            tgt.record_issued(issued(n, &format!("https://s{n}.example/")));
        }
        assert_eq!(tgt.issued.len(), MAX_ISSUED);
        assert_eq!(
            tgt.issued[MAX_ISSUED - 1].ticket_id,
            "ST-999",
            "newest kept"
        );
        let evicted: Vec<_> = (0..20)
            .filter_map(|n| tgt.record_pgt(format!("PGT-{n}")))
            .collect();
        assert_eq!(evicted, vec!["PGT-0", "PGT-1", "PGT-2", "PGT-3"]);
        assert_eq!(tgt.proxy_granting.len(), MAX_PGTS);
    }

    /// Security review (issue 13, item 3): a full history lets go of repeats and of
    /// entries that tell no one before it forgets an application, and reports that.
    #[test]
    fn a_full_history_keeps_one_entry_per_destination() {
        let mut tgt = TicketGrantingTicket::new(
            Principal {
                id: "a".into(),
                attributes: BTreeMap::new(),
            },
            OffsetDateTime::UNIX_EPOCH,
            ExpirationPolicy::fixed(std::time::Duration::from_secs(60)),
            false,
        );
        let back = |n: usize, service: &str| IssuedTicket {
            ticket_id: format!("ST-{n}"),
            service: service.into(),
            logout: LogoutTarget::BackChannel {
                url: service.into(),
            },
        };
        let first = "https://first.example/";
        assert_eq!(tgt.record_issued(back(0, first)), None);
        // A busy application asks for many tickets, then a quiet one...
        for n in 1..40 {
            assert_eq!(tgt.record_issued(back(n, "https://busy.example/")), None);
        }
        tgt.record_issued(IssuedTicket {
            logout: LogoutTarget::None,
            ..back(40, "https://quiet.example/")
        });
        // ...then distinct ones until the history overflows many times.
        for n in 41..103 {
            assert_eq!(
                tgt.record_issued(back(n, &format!("https://s{n}.example/"))),
                None,
                "{n}: repeats and silent entries go first"
            );
        }
        assert_eq!(tgt.issued.len(), MAX_ISSUED);
        assert_eq!(
            tgt.issued[0].service, first,
            "the first application is kept"
        );
        assert_eq!(
            tgt.issued
                .iter()
                .filter(|e| e.service == "https://busy.example/")
                .count(),
            1,
            "one entry of the busy application is kept"
        );
        assert!(tgt.issued.iter().all(|e| e.logout != LogoutTarget::None));
        // Only distinct destinations are left: the next one forgets the oldest, and says so.
        let forgotten = tgt.record_issued(back(103, "https://s103.example/"));
        assert_eq!(forgotten.map(|e| e.service).as_deref(), Some(first));
        assert_eq!(tgt.issued.len(), MAX_ISSUED);
    }

    #[test]
    fn ids_follow_the_protocol_charset_and_length() {
        let re = regex::Regex::new(r"^(ST|PT|PGT|PGTIOU|TGT)-[A-Za-z0-9-]+$").unwrap();
        let tgt = new_tgt_id();
        let st = new_service_ticket_id(&tgt);
        assert!(re.is_match(&st));
        assert_eq!(st.len(), 32);
        assert_eq!(new_proxy_ticket_id(&tgt).len(), 32);
        assert!(new_pgt_id(&tgt).len() <= 64 && new_pgt_iou().len() <= 64);
        for id in [
            tgt.clone(),
            new_proxy_ticket_id(&tgt),
            new_pgt_id(&tgt),
            new_pgt_iou(),
        ] {
            assert!(re.is_match(&id), "{id}");
        }
        assert_ne!(new_service_ticket_id(&tgt), st);
    }

    #[test]
    fn tickets_share_their_sessions_shard_and_nothing_more() {
        let tgt = new_tgt_id();
        let (st, pt, pgt) = (
            new_service_ticket_id(&tgt),
            new_proxy_ticket_id(&tgt),
            new_pgt_id(&tgt),
        );
        for id in [&st, &pt, &pgt] {
            assert_eq!(shard_of(id), shard_of(&tgt), "{id}");
        }
        // Only the shard: the rest of the session id appears in no ticket.
        let secret = &tgt[5..];
        for id in [&st, &pt, &pgt] {
            assert!(!id.contains(&secret[..8]), "{id}");
        }
        assert_eq!(shard_of("ST-"), '0');
        assert_eq!(shard_of("ST-{x}"), '0');
        assert_eq!(shard_of("nothing"), '0');
    }
}
