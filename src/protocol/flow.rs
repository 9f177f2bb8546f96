//! Login-flow tokens: the hidden `lt` field that binds a credential POST to a form this
//! server rendered (LOGINP-06, TKT-07).
//!
//! A token is sealed with AES-256-GCM (encrypted and authenticated), carries a random id,
//! an expiry and a hash of the form's `service`, and is claimed in the ticket registry on
//! first use, so a replayed, tampered, expired or transplanted token is refused. Nothing
//! is stored when a form is rendered, so rendering forms costs no memory.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::crypto::{Sealer, b64url_encode, random_bytes, sha256};
use crate::tickets::{RegistryError, TicketRegistry};

const PURPOSE: &[u8] = b"cas-server login flow v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("the login form token is not valid")]
    Invalid,
    #[error("the login form has expired")]
    Expired,
    #[error("the login form was already submitted")]
    Replayed,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    id: String,
    /// Unix seconds.
    exp: i64,
    /// base64url(sha256(service)), or empty without a service.
    svc: String,
    /// base64url(sha256(the browser's binding value)): ties the form to the browser that
    /// loaded it, so another site cannot post it for the user (login CSRF).
    #[serde(default)]
    bnd: String,
}

#[derive(Debug, Clone)]
pub struct LoginFlow {
    /// The first seals; all open (key rotation).
    sealers: Vec<Sealer>,
    ttl: Duration,
    tickets: Arc<dyn TicketRegistry>,
    clock: Arc<dyn Clock>,
}

impl LoginFlow {
    /// `keys[0]` seals new tokens; every key opens them.
    pub fn new(
        keys: &[[u8; 32]],
        ttl: Duration,
        tickets: Arc<dyn TicketRegistry>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            sealers: keys.iter().map(Sealer::new).collect(),
            ttl,
            tickets,
            clock,
        }
    }

    /// How long a form (and a step of the login in progress) stays usable.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh token for a form about `service`, for the browser holding `binding`.
    pub fn issue(&self, service: Option<&str>, binding: &str) -> String {
        let claims = Claims {
            id: b64url_encode(&random_bytes::<16>()),
            exp: (self.clock.now() + self.ttl).unix_timestamp(),
            svc: service_hash(service),
            bnd: b64url_encode(&sha256(binding.as_bytes())),
        };
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        match self.sealers.first() {
            Some(sealer) => sealer.seal(&json, PURPOSE),
            None => String::new(),
        }
    }

    /// Accepts `token` once, for a POST about `service` from the browser holding
    /// `binding`.
    pub async fn redeem(
        &self,
        token: &str,
        service: Option<&str>,
        bindings: &[&str],
    ) -> Result<Result<(), FlowError>, RegistryError> {
        let Some(claims) = self
            .sealers
            .iter()
            .find_map(|sealer| sealer.open(token, PURPOSE))
            .and_then(|json| serde_json::from_slice::<Claims>(&json).ok())
        else {
            return Ok(Err(FlowError::Invalid));
        };
        if claims.svc != service_hash(service) {
            return Ok(Err(FlowError::Invalid));
        }
        let bound = bindings.iter().any(|b| {
            crate::crypto::ct_eq(
                b64url_encode(&sha256(b.as_bytes())).as_bytes(),
                claims.bnd.as_bytes(),
            )
        });
        if !bound {
            return Ok(Err(FlowError::Invalid));
        }
        let now = self.clock.now();
        let Ok(expires) = time::OffsetDateTime::from_unix_timestamp(claims.exp) else {
            return Ok(Err(FlowError::Invalid));
        };
        if now >= expires {
            return Ok(Err(FlowError::Expired));
        }
        let fresh = self
            .tickets
            .claim_once(&format!("LT-{}", claims.id), expires)
            .await?;
        Ok(if fresh {
            Ok(())
        } else {
            Err(FlowError::Replayed)
        })
    }
}

fn service_hash(service: Option<&str>) -> String {
    service.map_or_else(String::new, |s| b64url_encode(&sha256(s.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::tickets::MemoryRegistry;

    fn flow(clock: &ManualClock) -> LoginFlow {
        LoginFlow::new(
            &[[1u8; 32]],
            Duration::from_secs(600),
            Arc::new(MemoryRegistry::new()),
            Arc::new(clock.clone()),
        )
    }

    #[tokio::test]
    async fn a_token_is_accepted_once_for_its_own_service() {
        let clock = ManualClock::new();
        let f = flow(&clock);
        let t = f.issue(Some("https://a/"), "B");
        assert_eq!(
            f.redeem(&t, Some("https://b/"), &["B"]).await.unwrap(),
            Err(FlowError::Invalid)
        );
        assert_eq!(
            f.redeem(&t, None, &["B"]).await.unwrap(),
            Err(FlowError::Invalid)
        );
        assert_eq!(
            f.redeem(&t, Some("https://a/"), &["B"]).await.unwrap(),
            Ok(())
        );
        assert_eq!(
            f.redeem(&t, Some("https://a/"), &["B"]).await.unwrap(),
            Err(FlowError::Replayed)
        );
    }

    #[tokio::test]
    async fn expired_and_forged_tokens_are_refused() {
        let clock = ManualClock::new();
        let f = flow(&clock);
        let t = f.issue(None, "B");
        clock.advance(Duration::from_secs(600));
        assert_eq!(
            f.redeem(&t, None, &["B"]).await.unwrap(),
            Err(FlowError::Expired)
        );
        assert_eq!(
            f.redeem("AAAA", None, &["B"]).await.unwrap(),
            Err(FlowError::Invalid)
        );
        let other = LoginFlow::new(
            &[[2u8; 32]],
            Duration::from_secs(600),
            Arc::new(MemoryRegistry::new()),
            Arc::new(clock.clone()),
        );
        assert_eq!(
            other
                .redeem(&f.issue(None, "B"), None, &["B"])
                .await
                .unwrap(),
            Err(FlowError::Invalid)
        );
        // Rotation: a new first key, the old one still accepted.
        let rotated = LoginFlow::new(
            &[[2u8; 32], [1u8; 32]],
            Duration::from_secs(600),
            Arc::new(MemoryRegistry::new()),
            Arc::new(clock.clone()),
        );
        assert_eq!(
            rotated
                .redeem(&f.issue(None, "B"), None, &["B"])
                .await
                .unwrap(),
            Ok(())
        );
        // Found in review: a form posted by another site (no binding cookie, or another
        // browser's) is refused.
        let t = f.issue(None, "B");
        assert_eq!(
            f.redeem(&t, None, &[]).await.unwrap(),
            Err(FlowError::Invalid)
        );
        assert_eq!(
            f.redeem(&t, None, &["C"]).await.unwrap(),
            Err(FlowError::Invalid)
        );
        // Found in review: a value planted ahead of the browser's own (a parent-domain
        // cookie) must not shadow it.
        assert_eq!(f.redeem(&t, None, &["C", "B"]).await.unwrap(), Ok(()));
    }
}
