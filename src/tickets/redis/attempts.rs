//! The failed-login counters of the throttle, shared by every node (see
//! `protocol::throttle`), in Redis next to the tickets.

use async_trait::async_trait;
use std::time::Duration;

use time::OffsetDateTime;

use super::RedisRegistry;
use crate::tickets::{AttemptOp, AttemptRules, AttemptStore, AttemptWait, RegistryError, unix_ms};

/// Counters under `a:<keyed hash>`: neither addresses nor user names in clear. Every
/// operation is sent once: repeating one would count an attempt twice.
#[async_trait]
impl AttemptStore for RedisRegistry {
    async fn attempts(
        &self,
        op: AttemptOp,
        per_user: &str,
        per_address: &str,
        rules: AttemptRules,
        now: OffsetDateTime,
    ) -> Result<Option<AttemptWait>, RegistryError> {
        // Both counters in the space of the address's, so that one script reads both.
        let space = self.hashed_space(&self.sealer.hash_id(&format!("attempts\0{per_address}")));
        let key = |name: &str| {
            format!(
                "{space}a:{}",
                self.sealer.hash_id(&format!("attempts\0{name}"))
            )
        };
        let op = match op {
            AttemptOp::Blocked => "blocked",
            AttemptOp::Begin => "begin",
            AttemptOp::Fail => "fail",
            AttemptOp::Succeeded => "succeeded",
            AttemptOp::FormRefused => "form_refused",
            AttemptOp::Release => "release",
        };
        let args = [
            op.to_owned(),
            rules.per_user.to_string(),
            rules.per_address.to_string(),
            rules.window.as_millis().to_string(),
            unix_ms(now).to_string(),
            rules.address_delay.as_millis().to_string(),
        ];
        let keys = [
            key(&format!("user\0{per_user}")),
            key(&format!("addr\0{per_address}")),
        ];
        let (kind, wait_ms): (i64, i64) = self
            .script(|s| &s.attempts, &space, &keys, &args, false)
            .await?;
        let wait = Duration::from_millis(wait_ms.unsigned_abs());
        Ok(match kind {
            1 => Some(AttemptWait::Blocked(wait)),
            2 => Some(AttemptWait::Slowed(wait)),
            _ => None,
        })
    }
}
