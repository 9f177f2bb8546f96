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
    /// `None` when encryption at rest is turned off: payloads are then plain JSON, still
    /// authenticated.
    sealer: Option<Sealer>,
    /// Keyed once: each hash or tag clones the keyed state instead of keying again.
    id_mac: Hmac<Sha256>,
    tag_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for TicketSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSealer")
            .field("encrypt", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

fn derive(key: &[u8; 32], label: &str) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl TicketSealer {
    pub fn new(key: &[u8; 32], encrypt: bool) -> Self {
        Self {
            sealer: encrypt.then(|| Sealer::new(&derive(key, "cas-server registry encryption v1"))),
            id_mac: keyed(&derive(key, "cas-server registry ids v1")),
            tag_mac: keyed(&derive(key, "cas-server registry tags v1")),
        }
    }

    /// The name a ticket id is stored under: HMAC-SHA-256, base64url (43 characters).
    pub fn hash_id(&self, id: &str) -> String {
        mac(&self.id_mac, &[id.as_bytes()])
    }

    /// An authentication tag over `parts` (a value stored in clear beside a payload, such
    /// as a session's last use), bound to `context`.
    pub fn tag(&self, context: &str, value: &str) -> String {
        mac(
            &self.tag_mac,
            &[context.as_bytes(), b"\0", value.as_bytes()],
        )
    }

    /// Whether `tag` is [`tag`](Self::tag)`(context, value)`, in constant time.
    pub fn verify_tag(&self, context: &str, value: &str, tag: &str) -> bool {
        crate::crypto::ct_eq(self.tag(context, value).as_bytes(), tag.as_bytes())
    }

    /// Seals `plaintext`, bound to `context` (the kind and hashed id it is stored under).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        match &self.sealer {
            Some(sealer) => format!("{SEALED}{}", sealer.seal(plaintext, context.as_bytes())),
            None => {
                let body = b64url_encode(plaintext);
                let tag = self.tag(context, &body);
                format!("{PLAIN}{body}.{tag}")
            }
        }
    }

    /// `None` for anything this key did not seal for `context`. With encryption on, a
    /// plain payload is refused too; without, a plain one must carry its tag: either
    /// way, whoever can write to the store cannot forge an entry.
    pub fn open(&self, stored: &str, context: &str) -> Option<Vec<u8>> {
        match &self.sealer {
            Some(sealer) => sealer.open(stored.strip_prefix(SEALED)?, context.as_bytes()),
            None => {
                let (body, tag) = stored.strip_prefix(PLAIN)?.split_once('.')?;
                self.verify_tag(context, body, tag)
                    .then(|| crate::crypto::b64url_decode(body))
                    .flatten()
            }
        }
    }
}

fn keyed(key: &[u8; 32]) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC key")
}

fn mac(keyed: &Hmac<Sha256>, parts: &[&[u8]]) -> String {
    let mut mac = keyed.clone();
    for part in parts {
        mac.update(part);
    }
    b64url_encode(&mac.finalize().into_bytes())
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
    fn plain_payloads_are_still_authenticated() {
        let a = TicketSealer::new(&[1; 32], false);
        let stored = a.seal(b"{\"user\":\"alice\"}", "tgt:abc");
        assert_eq!(a.open(&stored, "tgt:abc").unwrap(), b"{\"user\":\"alice\"}");
        assert!(a.open(&stored, "tgt:abd").is_none(), "moved to another id");
        let forged = format!(
            "j.{}.{}",
            b64url_encode(b"{\"user\":\"mallory\"}"),
            stored.rsplit('.').next().unwrap()
        );
        assert!(a.open(&forged, "tgt:abc").is_none(), "edited payload");
        assert!(
            TicketSealer::new(&[2; 32], false)
                .open(&stored, "tgt:abc")
                .is_none()
        );
        assert!(a.verify_tag("u:abc", "123", &a.tag("u:abc", "123")));
        assert!(!a.verify_tag("u:abc", "124", &a.tag("u:abc", "123")));
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
