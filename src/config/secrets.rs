//! Encrypted values in the configuration file (the security guide's "Credential
//! Encryption"): any string may be written `ENC(…)`; it is decrypted at load with the
//! key from the environment variable `CAS_CONFIG_KEY`, so the file can be shared,
//! versioned and backed up without the secrets in clear.

use serde_json::Value;

use crate::crypto::{Sealer, b64url_decode};

/// The environment variable holding the configuration key (base64url, 32 bytes).
pub const KEY_VARIABLE: &str = "CAS_CONFIG_KEY";
const PURPOSE: &[u8] = b"cas-server config value v1";

/// Why the configuration key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{KEY_VARIABLE} is not base64url; generate one with `cas-server keygen`")]
    NotBase64,
    #[error("{KEY_VARIABLE} must be 32 bytes in base64url; generate one with `cas-server keygen`")]
    WrongLength,
    #[error(
        "{KEY_VARIABLE} is not a random key (all one byte, a repeated pattern or a sequence); generate one with `cas-server keygen`"
    )]
    Degenerate,
}

/// Parses a key as `cas-server keygen` prints it.
pub fn parse_key(text: &str) -> Result<Sealer, KeyError> {
    let bytes = b64url_decode(text).ok_or(KeyError::NotBase64)?;
    let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength)?;
    if crate::crypto::is_degenerate(&key) {
        return Err(KeyError::Degenerate);
    }
    Ok(Sealer::new(&key))
}

/// `ENC(…)` of `plaintext`.
pub fn encrypt(sealer: &Sealer, plaintext: &str) -> String {
    format!("ENC({})", sealer.seal(plaintext.as_bytes(), PURPOSE))
}

/// Why an `ENC(…)` value stays encrypted.
#[derive(Debug, thiserror::Error)]
enum DecryptError {
    #[error("is encrypted (ENC(...)) but {KEY_VARIABLE} is not set")]
    NoKey,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "cannot be decrypted with {KEY_VARIABLE}: wrong key, or not made by `cas-server encrypt-value`"
    )]
    WrongKey,
}

/// Replaces every `ENC(…)` string under `value` by its plaintext, also noted in
/// `revealed` so later error messages can be scrubbed of it. Problems are reported as
/// `(key path, message)`, never with the value.
pub fn decrypt_all(
    value: &mut Value,
    key: Option<&str>,
    path: &str,
    problems: &mut Vec<(String, String)>,
    revealed: &mut Vec<String>,
) {
    match value {
        Value::String(text) => {
            let Some(sealed) = text.strip_prefix("ENC(").and_then(|t| t.strip_suffix(')')) else {
                return;
            };
            match decrypt(sealed, key) {
                Ok(plain) => {
                    revealed.push(plain.clone());
                    *text = plain;
                }
                Err(e) => problems.push((path.to_owned(), e.to_string())),
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                decrypt_all(item, key, &format!("{path}[{i}]"), problems, revealed);
            }
        }
        Value::Object(map) => {
            for (name, item) in map.iter_mut() {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                decrypt_all(item, key, &child, problems, revealed);
            }
        }
        _ => {}
    }
}

fn decrypt(sealed: &str, key: Option<&str>) -> Result<String, DecryptError> {
    let sealer = parse_key(key.ok_or(DecryptError::NoKey)?)?;
    sealer
        .open(sealed, PURPOSE)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(DecryptError::WrongKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{b64url_encode, random_bytes};

    #[test]
    fn enc_values_round_trip_and_fail_without_revealing_anything() {
        let key = b64url_encode(&random_bytes::<32>());
        let sealer = parse_key(&key).unwrap();
        let mut value = serde_json::json!({ "a": { "b": encrypt(&sealer, "s3cret"), "c": ["plain", encrypt(&sealer, "x")] } });
        let (mut problems, mut revealed) = (Vec::new(), Vec::new());
        decrypt_all(&mut value, Some(&key), "", &mut problems, &mut revealed);
        assert!(problems.is_empty());
        assert_eq!(revealed, ["s3cret", "x"]);
        assert_eq!(value["a"]["b"], "s3cret");
        assert_eq!(value["a"]["c"][1], "x");

        let mut value = serde_json::json!({ "a": encrypt(&sealer, "s3cret") });
        let other = b64url_encode(&random_bytes::<32>());
        decrypt_all(&mut value, Some(&other), "", &mut problems, &mut revealed);
        decrypt_all(&mut value, None, "", &mut problems, &mut revealed);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].0, "a");
        assert!(problems.iter().all(|(_, m)| !m.contains("s3cret")));
        assert_eq!(parse_key("short").err(), Some(KeyError::NotBase64));
        assert_eq!(parse_key("AAAA").err(), Some(KeyError::WrongLength));
        let zeros = b64url_encode(&[0; 32]);
        assert_eq!(parse_key(&zeros).err(), Some(KeyError::Degenerate));
    }
}
