//! Expiration policies: pure arithmetic on timestamps, checked on every read.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A hard lifetime from creation plus an optional sliding idle window from last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpirationPolicy {
    // Stored in milliseconds (Redis, the snapshot): lifetimes may be set below a second.
    #[serde(rename = "hard_ms", with = "millis")]
    pub hard: Duration,
    #[serde(rename = "idle_ms", with = "opt_millis")]
    pub idle: Option<Duration>,
}

impl ExpirationPolicy {
    /// A single lifetime, as for service tickets (TKT-04).
    pub fn fixed(ttl: Duration) -> Self {
        Self {
            hard: ttl,
            idle: None,
        }
    }

    /// Sliding idle window capped by a hard lifetime, as for SSO sessions.
    pub fn sliding(idle: Duration, hard: Duration) -> Self {
        Self {
            hard,
            idle: Some(idle),
        }
    }

    /// Expired at `now`? The boundary instant itself counts as expired.
    pub fn is_expired(
        &self,
        created: OffsetDateTime,
        last_used: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        if now >= created + self.hard {
            return true;
        }
        self.idle.is_some_and(|idle| now >= last_used + idle)
    }

    /// The latest instant at which a ticket created at `created` can still be alive.
    pub fn hard_deadline(&self, created: OffsetDateTime) -> OffsetDateTime {
        created + self.hard
    }
}

fn to_millis(d: &Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_millis(d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::to_millis(d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_policy_expires_on_idle_or_hard_limit() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let p = ExpirationPolicy::sliding(Duration::from_secs(60), Duration::from_secs(300));
        let s = |n: i64| t0 + time::Duration::seconds(n);
        assert!(!p.is_expired(t0, t0, s(59)));
        assert!(p.is_expired(t0, t0, s(60)));
        assert!(!p.is_expired(t0, s(250), s(299)));
        assert!(p.is_expired(t0, s(299), s(300)));
    }

    /// Found in review: policies were stored in whole seconds, so a 500 ms ticket read
    /// back from Redis or the snapshot had already expired.
    #[test]
    fn policies_keep_their_milliseconds_when_stored() {
        let p = ExpirationPolicy::sliding(Duration::from_millis(1500), Duration::from_millis(2500));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"hard_ms":2500,"idle_ms":1500}"#);
        assert_eq!(serde_json::from_str::<ExpirationPolicy>(&json).unwrap(), p);
    }

    #[test]
    fn fixed_policy_ignores_use() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let p = ExpirationPolicy::fixed(Duration::from_secs(10));
        assert!(!p.is_expired(t0, t0, t0 + time::Duration::seconds(9)));
        assert!(p.is_expired(t0, t0, t0 + time::Duration::seconds(10)));
    }
}
