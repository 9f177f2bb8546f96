//! The ticket-granting cookie codec (TGC-01..08).
//!
//! The cookie carries `TGT-id@client-ip@user-agent-digest`, encrypted (JWE `dir` +
//! A256GCM) and signed (JWS HS512) by josekit, in the order the operator chooses. Pinning
//! the value to the client's IP and User-Agent means a stolen cookie replayed from
//! elsewhere is just "no session". Every decoding failure is a [`TgcError`] that callers
//! treat as "no SSO session" and log at debug; the reason never reaches the client.
//!
//! # The value
//!
//! CAS allows only `A-Z a-z 0-9 -` in the value (TKT-01). Compact JOSE has `.` and `_`,
//! and nesting it base64-encodes the inner token's base64 a second time. So josekit still
//! makes and checks the same nested tokens, but the cookie carries only their variable
//! bytes, each once:
//!
//! ```text
//! encrypt, then sign:  TGC-E-<base62(iv ‖ tag ‖ signature ‖ ciphertext)>
//! sign, then encrypt:  TGC-S-<base62(iv ‖ tag ‖ ciphertext)>   plaintext = signature ‖ payload
//! ```
//!
//! - The protected headers are left out: they are the same in every cookie of a mode, so
//!   decoding re-attaches them and josekit verifies over them as usual (the JWS signature
//!   and AES-GCM's associated data cover them). An attacker cannot pick an algorithm.
//! - The IV, tag and signature have fixed lengths, so the parts need no separator and
//!   the ciphertext is what remains; a value too short for them is refused unopened.
//! - Sign-then-encrypt encrypts the signature and payload as bytes rather than the JWS
//!   text, which saves both the base64 inside the ciphertext and the JWS header.
//! - [`base62`] encodes in 8-byte blocks (11 characters): the alphabet is one symbol short
//!   of base64, and an escape for `_` would give a data-dependent length.
//! - The `TGC-` prefix is CAS 2.0's suggested value prefix; `E`/`S` names the layout,
//!   leaving room for another without trying keys on it.
//!
//! Decoding bounds the length, then checks the prefix, the alphabet and the part lengths,
//! then rebuilds the compact tokens and lets josekit verify and decrypt them. Only the
//! exact bytes josekit produced rebuild the token it signed and sealed: base62 and
//! base64url have one encoding per byte string, and encoding checks that josekit's
//! output is the shape rebuilding assumes. For a 40-character TGT id over IPv4, the value
//! is 239 characters, against 354 (encrypt, then sign) or 363 (sign, then encrypt) before.
//!
//! Cookies of the earlier format (compact JOSE, recognised by its `.`) are still read, by
//! the same keys and checks, so sessions started before an upgrade survive it; new
//! cookies are always in the current format. (The compact token rebuilt from a current
//! value is thus accepted too: it is the same authentic, pinned session, not a new one.)
//! That branch can go once no node has issued the earlier format for longer than the
//! longest session: the remember-me lifetime, 14 days by default.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use josekit::JoseError;
use josekit::jwe::{
    self, Dir, JweHeader, alg::direct::DirectJweDecrypter, alg::direct::DirectJweEncrypter,
};
use josekit::jws::{self, HS512, JwsHeader, alg::hmac::HmacJwsSigner, alg::hmac::HmacJwsVerifier};
use lru::LruCache;

use crate::crypto::{b64url_encode, sha256};

pub mod base62;
mod wire;

pub use crate::config::CryptoMode;
pub use crate::config::keys::{
    ENCRYPTION_KEY_LEN, KeyError, KeyFileError, KeyFileSyntax, KeyName, SIGNING_KEY_LEN, TgcKeys,
};
use wire::Token;

/// Why a cookie value is not a session. Each is an expected outcome (a stale, foreign or
/// forged cookie), so the variant is the whole story: josekit's own message adds nothing
/// a caller could act on, and collecting it would cost on every refused cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TgcError {
    #[error("cookie is not a well-formed token")]
    Malformed,
    #[error("cookie signature does not verify")]
    BadSignature,
    #[error("cookie does not decrypt")]
    DecryptFailed,
    #[error("cookie was issued to another IP address")]
    IpMismatch,
    #[error("cookie was issued to another user agent")]
    UserAgentMismatch,
}

/// Why the codec cannot be built, or a cookie produced: a fault of the server, not of a
/// client.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("no TGC keys")]
    NoKeys,
    #[error("the TGC keys are not usable")]
    Keys(#[source] JoseError),
    #[error("the cookie could not be encrypted or signed")]
    Jose(#[source] JoseError),
    /// josekit wrote a token other than the one the cookie format carries (another
    /// header or part length): issuing it would give a cookie that cannot be read back.
    #[error("the cookie could not be encoded: unexpected token from josekit")]
    UnexpectedToken,
}

/// One generation of keys, ready to use.
struct KeySet {
    encrypter: DirectJweEncrypter,
    decrypter: DirectJweDecrypter,
    signer: HmacJwsSigner,
    verifier: HmacJwsVerifier,
}

pub struct TgcCodec {
    /// The first set writes cookies; every set reads them, so keys can be rotated
    /// without logging anyone out.
    keys: Vec<KeySet>,
    mode: CryptoMode,
    pin_to_session: bool,
    opened: OpenedCookies,
}

impl std::fmt::Debug for TgcCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TgcCodec")
            .field("keys", &self.keys.len())
            .field("mode", &self.mode)
            .field("pin_to_session", &self.pin_to_session)
            .finish_non_exhaustive()
    }
}

/// The User-Agent as pinned in the cookie: a digest, so that the cookie (and each entry
/// of the opened-cookie cache) has a fixed size whatever the browser sends; a raw 3 KB
/// User-Agent made a cookie browsers refuse to store.
fn user_agent_pin(user_agent: &str) -> String {
    b64url_encode(&sha256(user_agent.as_bytes())[..16])
}

impl TgcCodec {
    /// `keys[0]` encodes; all decode. At least one key set is required.
    pub fn new(
        keys: &[TgcKeys],
        mode: CryptoMode,
        pin_to_session: bool,
    ) -> Result<Self, EncodeError> {
        if keys.is_empty() {
            return Err(EncodeError::NoKeys);
        }
        let keys = keys
            .iter()
            .map(|k| {
                Ok(KeySet {
                    encrypter: Dir.encrypter_from_bytes(k.encryption)?,
                    decrypter: Dir.decrypter_from_bytes(k.encryption)?,
                    signer: HS512.signer_from_bytes(k.signing)?,
                    verifier: HS512.verifier_from_bytes(k.signing)?,
                })
            })
            .collect::<Result<Vec<_>, JoseError>>()
            .map_err(EncodeError::Keys)?;
        Ok(Self {
            keys,
            mode,
            pin_to_session,
            opened: OpenedCookies::default(),
        })
    }

    /// The cookie value for a session, in the current format (see the module doc).
    pub fn encode(&self, tgt_id: &str, ip: &str, user_agent: &str) -> Result<String, EncodeError> {
        let payload = format!("{tgt_id}@{ip}@{}", user_agent_pin(user_agent));
        let keys = &self.keys[0];
        match self.mode {
            CryptoMode::EncryptAndSign => {
                let jwe = keys.encrypt(payload.as_bytes())?;
                let jws = keys.sign(jwe.as_bytes())?;
                wire::pack_encrypted_then_signed(&jwe, &jws)
            }
            CryptoMode::SignAndEncrypt => {
                let jws = keys.sign(payload.as_bytes())?;
                let jwe = keys.encrypt(&wire::signed_plaintext(&jws, payload.as_bytes())?)?;
                wire::pack_signed_then_encrypted(&jwe)
            }
        }
    }

    /// The TGT id inside `value`, if the cookie is authentic and pinned to this client.
    pub fn decode(&self, value: &str, ip: &str, user_agent: &str) -> Result<String, TgcError> {
        let token = wire::parse(value, self.mode)?;
        let key = OpenedCookies::key(value);
        let payload = match self.opened.get(&key) {
            Some(payload) => payload,
            None => {
                let payload = self.open_with_any_key(&token)?;
                self.opened.insert(key, payload.clone());
                payload
            }
        };
        // The TGT id, an IP and the pin never contain '@'.
        let mut parts = payload.splitn(3, '@');
        let (Some(tgt), Some(cookie_ip), Some(cookie_ua)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TgcError::Malformed);
        };
        if self.pin_to_session {
            if cookie_ip != ip {
                return Err(TgcError::IpMismatch);
            }
            if cookie_ua != user_agent_pin(user_agent) {
                return Err(TgcError::UserAgentMismatch);
            }
        }
        Ok(tgt.to_owned())
    }

    fn open_with_any_key(&self, token: &Token<'_>) -> Result<Arc<str>, TgcError> {
        let mut first_error = None;
        for keys in &self.keys {
            match self.open(keys, token) {
                Ok(payload) => {
                    return String::from_utf8(payload)
                        .map(Arc::from)
                        .map_err(|_| TgcError::Malformed);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(TgcError::Malformed))
    }

    fn open(&self, keys: &KeySet, token: &Token<'_>) -> Result<Vec<u8>, TgcError> {
        match (self.mode, token) {
            // Both formats nest the same way here: the JWS payload is the compact JWE.
            (CryptoMode::EncryptAndSign, Token::Legacy(jws)) => keys.verify_then_decrypt(jws),
            (CryptoMode::EncryptAndSign, Token::Current(jws)) => keys.verify_then_decrypt(jws),
            (CryptoMode::SignAndEncrypt, Token::Legacy(jwe)) => keys.verify(&keys.decrypt(jwe)?),
            (CryptoMode::SignAndEncrypt, Token::Current(jwe)) => {
                let jws = wire::signed_from_plaintext(&keys.decrypt(jwe)?)?;
                keys.verify(jws.as_bytes())
            }
        }
    }
}

/// Payloads of cookies already verified and decrypted, keyed by a SHA-256 of the whole
/// cookie value. A browser sends the same cookie on every SSO request, and opening it
/// (HMAC, AES-GCM and two JOSE parses) was a sixth of an SSO cycle's CPU. Only authentic
/// cookies enter; pinning and the session itself are still checked on every request.
/// Bounded: each shard forgets its least recently used entry when full.
struct OpenedCookies {
    shards: Vec<Mutex<LruCache<[u8; 32], Arc<str>>>>,
}

const OPENED_SHARDS: usize = 16;
const OPENED_PER_SHARD: usize = 1024;

impl Default for OpenedCookies {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(OPENED_PER_SHARD).unwrap_or(NonZeroUsize::MIN);
        Self {
            shards: (0..OPENED_SHARDS)
                .map(|_| Mutex::new(LruCache::new(capacity)))
                .collect(),
        }
    }
}

impl OpenedCookies {
    fn shard(&self, key: &[u8; 32]) -> &Mutex<LruCache<[u8; 32], Arc<str>>> {
        &self.shards[usize::from(key[0]) % OPENED_SHARDS]
    }

    fn key(value: &str) -> [u8; 32] {
        sha256(value.as_bytes())
    }

    fn get(&self, key: &[u8; 32]) -> Option<Arc<str>> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).cloned()
    }

    fn insert(&self, key: [u8; 32], payload: Arc<str>) {
        let mut shard = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.put(key, payload);
    }
}

impl KeySet {
    fn encrypt(&self, payload: &[u8]) -> Result<String, EncodeError> {
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        jwe::serialize_compact(payload, &header, &self.encrypter).map_err(EncodeError::Jose)
    }

    fn decrypt(&self, token: &str) -> Result<Vec<u8>, TgcError> {
        let (payload, header) = jwe::deserialize_compact(token, &self.decrypter)
            .map_err(|_| TgcError::DecryptFailed)?;
        // Refuse anything but the one algorithm pair we issue (no algorithm confusion).
        if header.algorithm() != Some("dir") || header.content_encryption() != Some("A256GCM") {
            return Err(TgcError::DecryptFailed);
        }
        Ok(payload)
    }

    fn sign(&self, payload: &[u8]) -> Result<String, EncodeError> {
        jws::serialize_compact(payload, &JwsHeader::new(), &self.signer).map_err(EncodeError::Jose)
    }

    fn verify(&self, token: &[u8]) -> Result<Vec<u8>, TgcError> {
        if token.split(|&b| b == b'.').count() != 3 {
            return Err(TgcError::Malformed);
        }
        jws::deserialize_compact(token, &self.verifier)
            .map(|(payload, _)| payload)
            .map_err(|_| TgcError::BadSignature)
    }

    /// Encrypt-then-sign: the signature is checked before any decryption is attempted.
    fn verify_then_decrypt(&self, jws: &str) -> Result<Vec<u8>, TgcError> {
        let jwe =
            String::from_utf8(self.verify(jws.as_bytes())?).map_err(|_| TgcError::Malformed)?;
        self.decrypt(&jwe)
    }
}

#[cfg(test)]
mod tests;
