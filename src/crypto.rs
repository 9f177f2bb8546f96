//! All randomness, secret comparison and symmetric sealing go through here, so there is
//! one place to audit: ticket bodies come from the OS CSPRNG, secrets are compared in
//! constant time, and sealed blobs are AES-256-GCM with associated data.
//!
//! Three cryptographic libraries are linked, each for what only it does here: RustCrypto
//! (`aes-gcm`, `hmac`, `sha2`, the crates the project was founded on) for everything of
//! ours; OpenSSL under `josekit`, for the JOSE tokens of the SSO cookie; aws-lc under
//! `rustls`, its default provider, for TLS. Moving our own sealing to aws-lc would save
//! no library (rustls keeps it, josekit keeps OpenSSL) and would replace founding crates,
//! so they stay as they are.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const NONCE_LEN: usize = 12;

/// Fills `buf` from the operating system's CSPRNG.
///
/// The OS generator failing is not something a login server can work around: tickets
/// guessed from a broken generator would be worse than stopping.
pub fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    SysRng
        .try_fill_bytes(buf)
        .expect("the operating system's random number generator failed");
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    fill_random(&mut buf);
    buf
}

/// `len` characters of base62 (≈5.95 bits each), unbiased by rejection sampling.
///
/// Ticket bodies come from the thread-local CSPRNG (ChaCha, seeded from and reseeded by
/// the operating system), which costs no system call per ticket; long-lived keys use
/// [`fill_random`] directly.
pub fn random_base62(len: usize) -> String {
    use rand::Rng as _;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    let mut rng = rand::rng();
    while out.len() < len {
        rng.fill_bytes(&mut buf);
        for &b in &buf {
            // 248 = 4 * 62: bytes above it would favour the first symbols.
            if b < 248 {
                out.push(char::from(BASE62[usize::from(b % 62)]));
                if out.len() == len {
                    break;
                }
            }
        }
    }
    out
}

/// Constant-time equality for secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn b64url_encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .ok()
}

/// The operating system's CA certificates (outbound HTTP and LDAP over TLS).
pub fn system_roots() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(error = %err, "skipping an unreadable system CA certificate");
    }
    native.certs
}

/// Whether `key` could not have come from a random generator: fewer distinct bytes than
/// half its length (32 random bytes hold about 30), a short pattern repeated, or a
/// counting sequence. Such a key (all zeros, a password typed twice, `0x00..0x1f`) is
/// guessable whatever its length.
pub fn is_degenerate(key: &[u8]) -> bool {
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &b in key {
        if !std::mem::replace(&mut seen[usize::from(b)], true) {
            distinct += 1;
        }
    }
    let periodic = (1..=key.len() / 2).any(|p| key.iter().skip(p).zip(key).all(|(a, b)| a == b));
    let counting = key
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .collect::<std::collections::HashSet<_>>()
        .len()
        <= 1;
    distinct < key.len().min(256) / 2 || periodic || counting
}

/// A file of secrets whose mode lets too many people read it, or whose mode cannot be
/// read. The message names the file, its mode and the `chmod` that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum FileModeError {
    #[error("cannot read {}", path.display())]
    Metadata {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} holds secret keys but is readable by {who} (mode {mode:o}); run `chmod {chmod} {}`",
        path.display(),
        path.display()
    )]
    Readable {
        path: std::path::PathBuf,
        who: &'static str,
        mode: u32,
        chmod: &'static str,
    },
}

/// Refuses a file holding secrets that group or others may read (Unix), with the fix.
pub fn check_private_file(path: &std::path::Path) -> Result<(), FileModeError> {
    check_mode(path, 0o077, "group or others", "600")
}

/// Refuses a private key file that anyone may read. A group may: Debian gives TLS keys
/// to the `ssl-cert` group (mode 0640).
pub fn check_not_world_readable(path: &std::path::Path) -> Result<(), FileModeError> {
    check_mode(path, 0o007, "others", "o-rwx")
}

fn check_mode(
    path: &std::path::Path,
    forbidden: u32,
    who: &'static str,
    chmod: &'static str,
) -> Result<(), FileModeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|source| FileModeError::Metadata {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & forbidden != 0 {
            return Err(FileModeError::Readable {
                path: path.to_owned(),
                who,
                mode: mode & 0o777,
                chmod,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, forbidden, who, chmod);
    Ok(())
}

/// AES-256-GCM sealing of small blobs (login-flow tokens). The output is
/// base64url(nonce || ciphertext || tag); the associated data binds a blob to its purpose.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        #[allow(clippy::expect_used)] // a [u8; 32] is always a valid AES-256 key
        let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
        Self { cipher }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        // A fresh random nonce every time; `from` an array of the right size cannot fail
        // (no fallback value that could repeat).
        let nonce = aes_gcm::Nonce::from(random_bytes::<NONCE_LEN>());
        #[allow(clippy::expect_used)] // encryption only fails for inputs of gigabytes
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of a small buffer");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        b64url_encode(&out)
    }

    /// `None` for anything that was not sealed by this key with this associated data.
    pub fn open(&self, token: &str, aad: &[u8]) -> Option<Vec<u8>> {
        let raw = b64url_decode(token)?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce_bytes, sealed) = raw.split_at(NONCE_LEN);
        let nonce = aes_gcm::Nonce::try_from(nonce_bytes).ok()?;
        self.cipher
            .decrypt(&nonce, Payload { msg: sealed, aad })
            .ok()
    }
}

/// Costs above these are refused at load: one verification would take seconds, and a
/// burst of logins would stall every core.
const MAX_M_COST: u32 = 1 << 20;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// A password hash that cannot be used, or a password that cannot be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordHashError {
    #[error("not a PHC hash string")]
    NotPhc(#[source] argon2::password_hash::phc::Error),
    #[error("uses `{0}`; only argon2id hashes are accepted")]
    Algorithm(String),
    #[error("has unusable argon2 parameters")]
    Params(#[source] argon2::password_hash::Error),
    #[error(
        "costs too much to verify (at most m={MAX_M_COST}, t={MAX_T_COST}, p={MAX_P_COST}); `cas-server hash-password` writes m={}, t={}, p={}",
        argon2::Params::DEFAULT_M_COST,
        argon2::Params::DEFAULT_T_COST,
        argon2::Params::DEFAULT_P_COST
    )]
    TooCostly,
    #[error("the password cannot be hashed")]
    Hash(#[source] argon2::password_hash::Error),
}

/// Hashes `password` with argon2id and the crate's default (OWASP-recommended) cost.
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    use argon2::PasswordHasher as _;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(PasswordHashError::Hash)
}

/// Checks that `phc` is an argon2id PHC string of a sane cost.
pub fn check_password_hash(phc: &str) -> Result<(), PasswordHashError> {
    let parsed =
        argon2::password_hash::phc::PasswordHash::new(phc).map_err(PasswordHashError::NotPhc)?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PasswordHashError::Algorithm(
            parsed.algorithm.as_str().to_owned(),
        ));
    }
    let params = argon2::Params::try_from(&parsed).map_err(PasswordHashError::Params)?;
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST
    {
        return Err(PasswordHashError::TooCostly);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_too_costly_to_verify_are_refused() {
        let huge = "$argon2id$v=19$m=4194304,t=1000,p=1$c2FsdHNhbHQ$Ml2Y8yXQbEnU1NxiHbVYsw";
        let e = check_password_hash(huge).unwrap_err();
        assert!(matches!(e, PasswordHashError::TooCostly), "{e}");
        assert!(e.to_string().contains("costs too much"), "{e}");
    }

    #[test]
    fn only_argon2id_hashes_are_accepted() {
        assert!(check_password_hash(&hash_password("x").unwrap()).is_ok());
        assert!(check_password_hash("plaintext").is_err());
        assert!(
            check_password_hash("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Ml2Y8yXQbEnU1NxiHbVYsw")
                .is_err()
        );
    }

    #[test]
    fn degenerate_keys_are_recognised_and_random_ones_never() {
        assert!(is_degenerate(&[0u8; 32]));
        assert!(is_degenerate(&[0xff; 64]));
        assert!(is_degenerate(b"passwordpasswordpasswordpassword"));
        assert!(is_degenerate(&(0u8..32).collect::<Vec<_>>()));
        assert!(is_degenerate(&(0u8..64).rev().collect::<Vec<_>>()));
        let period16: Vec<u8> = (0u8..16)
            .map(|b| b.wrapping_mul(37))
            .cycle()
            .take(32)
            .collect();
        assert!(is_degenerate(&period16));
        for _ in 0..10_000 {
            assert!(!is_degenerate(&random_bytes::<32>()));
            assert!(!is_degenerate(&random_bytes::<64>()));
        }
    }

    #[test]
    fn base62_has_requested_length_and_alphabet() {
        let s = random_base62(29);
        assert_eq!(s.len(), 29);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(s, random_base62(29));
    }

    #[test]
    fn sealed_blob_round_trips_and_rejects_tampering() {
        let sealer = Sealer::new(&[7u8; 32]);
        let token = sealer.seal(b"hello", b"purpose");
        assert_eq!(
            sealer.open(&token, b"purpose").as_deref(),
            Some(&b"hello"[..])
        );
        assert!(sealer.open(&token, b"other").is_none());
        let mut bytes = b64url_decode(&token).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(sealer.open(&b64url_encode(&bytes), b"purpose").is_none());
        assert!(Sealer::new(&[8u8; 32]).open(&token, b"purpose").is_none());
        assert!(sealer.open("not base64 !", b"purpose").is_none());
    }

    #[test]
    fn ct_eq_compares_content() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

/// A secret value: its `Debug` prints `***`, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod secret_tests {
    use super::Secret;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }
}
