//! Tickets at rest (in Redis, in the snapshot file) are sealed with the registry key and
//! stored under keyed hashes of their ids: a dump of the store can be neither read nor
//! replayed as cookies or tickets, and a payload cannot be moved to another id. One key
//! is configured; the encryption and id-hashing keys are derived from it, so neither
//! use weakens the other.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::crypto::{Sealer, b64url_encode};

/// Prefix of a sealed payload; plain payloads (encryption turned off) start with `j.`.
const SEALED: &str = "s.";
const PLAIN: &str = "j.";

#[derive(Clone)]
pub struct TicketSealer {
    /// `None` when encryption at rest is turned off: payloads are then plain JSON.
    sealer: Option<Sealer>,
    id_key: [u8; 32],
}

impl std::fmt::Debug for TicketSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSealer")
            .field("encrypt", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

fn derive(key: &[u8; 32], label: &str) -> [u8; 32] {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC key");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl TicketSealer {
    pub fn new(key: &[u8; 32], encrypt: bool) -> Self {
        Self {
            sealer: encrypt.then(|| Sealer::new(&derive(key, "cas-server registry encryption v1"))),
            id_key: derive(key, "cas-server registry ids v1"),
        }
    }

    /// The name a ticket id is stored under: HMAC-SHA-256, base64url (43 characters).
    pub fn hash_id(&self, id: &str) -> String {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.id_key).expect("HMAC key");
        mac.update(id.as_bytes());
        b64url_encode(&mac.finalize().into_bytes())
    }

    /// Seals `plaintext`, bound to `context` (the kind and hashed id it is stored under).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        match &self.sealer {
            Some(sealer) => format!("{SEALED}{}", sealer.seal(plaintext, context.as_bytes())),
            None => format!("{PLAIN}{}", b64url_encode(plaintext)),
        }
    }

    /// `None` for anything this key did not seal for `context`. With encryption on, a
    /// plain payload is refused too: anyone who can write to the store could forge one.
    pub fn open(&self, stored: &str, context: &str) -> Option<Vec<u8>> {
        match &self.sealer {
            Some(sealer) => sealer.open(stored.strip_prefix(SEALED)?, context.as_bytes()),
            None => crate::crypto::b64url_decode(stored.strip_prefix(PLAIN)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_are_bound_to_key_and_context() {
        let a = TicketSealer::new(&[1; 32], true);
        let sealed = a.seal(b"{\"user\":\"alice\"}", "tgt:abc");
        assert!(!sealed.contains("alice"));
        assert_eq!(a.open(&sealed, "tgt:abc").unwrap(), b"{\"user\":\"alice\"}");
        assert!(a.open(&sealed, "tgt:abd").is_none(), "moved to another id");
        assert!(
            TicketSealer::new(&[2; 32], true)
                .open(&sealed, "tgt:abc")
                .is_none()
        );
        let plain = TicketSealer::new(&[1; 32], false).seal(b"x", "tgt:abc");
        assert!(a.open(&plain, "tgt:abc").is_none(), "forged plain payload");
    }

    #[test]
    fn ids_hash_under_the_key() {
        let a = TicketSealer::new(&[1; 32], true);
        let h = a.hash_id("TGT-1");
        assert_eq!(h.len(), 43);
        assert!(!h.contains("TGT"));
        assert_eq!(h, a.hash_id("TGT-1"));
        assert_ne!(h, TicketSealer::new(&[2; 32], true).hash_id("TGT-1"));
    }
}
