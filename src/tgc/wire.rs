//! The cookie value as sent to the browser, and the compact JOSE tokens josekit reads,
//! rebuilt from it (the layout and its reasons are in the parent module's doc).
//!
//! Everything here is framing: nothing is trusted until josekit has checked the rebuilt
//! token. What this code guarantees is that the rebuilt token is exactly the one josekit
//! produced at encoding (fixed headers, fixed part lengths, one encoding per byte string),
//! so a value that is not byte for byte an issued cookie cannot verify.

use super::{CryptoMode, EncodeError, TgcError, base62};
use crate::crypto::{b64url_decode, b64url_encode};

/// `{"enc":"A256GCM","alg":"dir"}`, as josekit serializes the JWE protected header. It is
/// the associated data of AES-GCM, so it is re-attached byte for byte; encoding checks
/// that josekit still writes exactly this.
pub(super) const JWE_HEADER: &str = "eyJlbmMiOiJBMjU2R0NNIiwiYWxnIjoiZGlyIn0";
/// `{"alg":"HS512"}`, the JWS protected header; covered by the signature.
pub(super) const JWS_HEADER: &str = "eyJhbGciOiJIUzUxMiJ9";

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SIG_LEN: usize = 64;

/// Every current value starts so: the cookie value prefix of CAS 2.0 (§3.6.1), then a
/// letter naming the layout, so a future layout can be told apart without trying keys.
const PREFIX: &str = "TGC-";

/// Largest cookie value worth looking at; real ones are a few hundred bytes, and
/// browsers keep none over 4 KiB.
pub(super) const MAX_COOKIE_LEN: usize = 8192;

fn layout(mode: CryptoMode) -> &'static str {
    match mode {
        CryptoMode::EncryptAndSign => "E-",
        CryptoMode::SignAndEncrypt => "S-",
    }
}

/// A cookie value turned into the compact token josekit opens first (the outer one).
#[derive(Debug)]
pub(super) enum Token<'a> {
    /// A value issued before the current format: compact JOSE as is, the inner token
    /// being the outer one's payload as compact text.
    Legacy(&'a str),
    /// Rebuilt from the current format. With sign-then-encrypt, the plaintext of this JWE
    /// is the packed signed token; see [`signed_from_plaintext`].
    Current(String),
}

/// The token in `value`, refused before any cryptography unless it has the shape of a
/// cookie issued in `mode`.
pub(super) fn parse(value: &str, mode: CryptoMode) -> Result<Token<'_>, TgcError> {
    if value.is_empty() || value.len() > MAX_COOKIE_LEN {
        return Err(TgcError::Malformed);
    }
    if let Some(rest) = value.strip_prefix(PREFIX) {
        let body = rest.strip_prefix(layout(mode)).ok_or(TgcError::Malformed)?;
        let bytes = base62::decode(body).ok_or(TgcError::Malformed)?;
        return rebuild(mode, &bytes).map(Token::Current);
    }
    // The format before TKT-01 was honoured: compact JOSE, always with a '.'. Sessions
    // last up to 14 days (remember-me), so those cookies are read until the last of them
    // has expired; nothing issues them any more.
    let legacy_alphabet = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    if value.contains('.') && value.bytes().all(legacy_alphabet) {
        return Ok(Token::Legacy(value));
    }
    Err(TgcError::Malformed)
}

fn rebuild(mode: CryptoMode, bytes: &[u8]) -> Result<String, TgcError> {
    let (iv, rest) = bytes.split_at_checked(IV_LEN).ok_or(TgcError::Malformed)?;
    let (tag, rest) = rest.split_at_checked(TAG_LEN).ok_or(TgcError::Malformed)?;
    match mode {
        CryptoMode::EncryptAndSign => {
            let (signature, ciphertext) =
                rest.split_at_checked(SIG_LEN).ok_or(TgcError::Malformed)?;
            if ciphertext.is_empty() {
                return Err(TgcError::Malformed);
            }
            let jwe = compact_jwe(iv, ciphertext, tag);
            Ok(compact_jws(jwe.as_bytes(), signature))
        }
        CryptoMode::SignAndEncrypt if rest.is_empty() => Err(TgcError::Malformed),
        CryptoMode::SignAndEncrypt => Ok(compact_jwe(iv, rest, tag)),
    }
}

/// The value for `jws`, josekit's signature of the compact `jwe` (encrypt, then sign):
/// `iv || tag || signature || ciphertext`, the headers left out.
pub(super) fn pack_encrypted_then_signed(jwe: &str, jws: &str) -> Result<String, EncodeError> {
    let JweParts {
        iv,
        ciphertext,
        tag,
    } = JweParts::of(jwe)?;
    let signature = jws_signature(jws, jwe.as_bytes())?;
    Ok(render(
        CryptoMode::EncryptAndSign,
        &[&iv, &tag, &signature, &ciphertext],
    ))
}

/// The value for the compact `jwe` (sign, then encrypt): `iv || tag || ciphertext`.
pub(super) fn pack_signed_then_encrypted(jwe: &str) -> Result<String, EncodeError> {
    let JweParts {
        iv,
        ciphertext,
        tag,
    } = JweParts::of(jwe)?;
    Ok(render(
        CryptoMode::SignAndEncrypt,
        &[&iv, &tag, &ciphertext],
    ))
}

/// What sign-then-encrypt encrypts: `signature || payload` from josekit's `jws` of
/// `payload`, rather than the JWS text, whose base64 would be encrypted and encoded again.
pub(super) fn signed_plaintext(jws: &str, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut plaintext = jws_signature(jws, payload)?;
    plaintext.extend_from_slice(payload);
    Ok(plaintext)
}

/// The compact JWS packed by [`signed_plaintext`], for josekit to verify.
pub(super) fn signed_from_plaintext(plaintext: &[u8]) -> Result<String, TgcError> {
    match plaintext.split_at_checked(SIG_LEN) {
        Some((signature, payload)) if !payload.is_empty() => Ok(compact_jws(payload, signature)),
        _ => Err(TgcError::Malformed),
    }
}

fn compact_jwe(iv: &[u8], ciphertext: &[u8], tag: &[u8]) -> String {
    // `dir`: no encrypted key, so the second part is empty.
    format!(
        "{JWE_HEADER}..{}.{}.{}",
        b64url_encode(iv),
        b64url_encode(ciphertext),
        b64url_encode(tag)
    )
}

fn compact_jws(payload: &[u8], signature: &[u8]) -> String {
    format!(
        "{JWS_HEADER}.{}.{}",
        b64url_encode(payload),
        b64url_encode(signature)
    )
}

fn render(mode: CryptoMode, parts: &[&[u8]]) -> String {
    format!(
        "{PREFIX}{}{}",
        layout(mode),
        base62::encode(&parts.concat())
    )
}

struct JweParts {
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

impl JweParts {
    /// The parts of josekit's compact JWE, checked to be what [`rebuild`] gives back:
    /// our header, no encrypted key, parts of the fixed lengths.
    fn of(jwe: &str) -> Result<Self, EncodeError> {
        let parts: Vec<&str> = jwe.split('.').collect();
        let [JWE_HEADER, "", iv, ciphertext, tag] = parts[..] else {
            return Err(EncodeError::UnexpectedToken);
        };
        let ciphertext = part(ciphertext, None)?;
        if ciphertext.is_empty() {
            return Err(EncodeError::UnexpectedToken);
        }
        Ok(Self {
            iv: part(iv, Some(IV_LEN))?,
            ciphertext,
            tag: part(tag, Some(TAG_LEN))?,
        })
    }
}

/// The signature of josekit's compact `jws`, checked to sign exactly `payload` under our
/// header, so that rebuilding from `payload` gives back what was signed.
fn jws_signature(jws: &str, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let parts: Vec<&str> = jws.split('.').collect();
    match parts[..] {
        [JWS_HEADER, signed, signature] if signed == b64url_encode(payload) => {
            part(signature, Some(SIG_LEN))
        }
        _ => Err(EncodeError::UnexpectedToken),
    }
}

fn part(text: &str, len: Option<usize>) -> Result<Vec<u8>, EncodeError> {
    b64url_decode(text)
        .filter(|bytes| len.is_none_or(|len| bytes.len() == len))
        .ok_or(EncodeError::UnexpectedToken)
}
