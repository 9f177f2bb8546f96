//! Secrets in the configuration.
//!
//! Encrypted values (the security guide's "Credential Encryption"): any string may be
//! written `ENC(…)`; it is decrypted at load with the key from the environment variable
//! `CAS_CONFIG_KEY`, so the file can be shared, versioned and backed up without the
//! secrets in clear. Key material a section takes (TGC keys, the registry key) may be
//! given inline or as a `<key>_file` path that only its owner may read.

use config::{Value, ValueKind};

use super::report::{Report, Reported, Scope};
use crate::crypto::{Sealer, Secret, b64url_decode};

/// The environment variable holding the configuration key (base64url, 32 bytes).
pub const KEY_VARIABLE: &str = "CAS_CONFIG_KEY";
const PURPOSE: &[u8] = b"cas-server config value v1";
/// The problem reported for a key that no random generator would produce.
pub(super) const DEGENERATE: &str = "is not a random key (all one byte, a repeated pattern or a sequence); generate one with `cas-server keygen`";
const NOT_A_KEY: &str = "must be 32 bytes in base64url; generate one with `cas-server keygen`";

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

/// Replaces every `ENC(…)` string under `value` (at `path`) by its plaintext, also noted
/// in `revealed` so that problems found later can be scrubbed of it. A value that stays
/// encrypted is reported by its key path, never with the value.
pub(super) fn decrypt_all(
    value: &mut Value,
    key: Option<&str>,
    path: &str,
    report: &mut Report,
    revealed: &mut Vec<String>,
) {
    match &mut value.kind {
        ValueKind::String(text) => {
            let Some(sealed) = text.strip_prefix("ENC(").and_then(|t| t.strip_suffix(')')) else {
                return;
            };
            match decrypt(sealed, key) {
                Ok(plain) => {
                    revealed.push(plain.clone());
                    *text = plain;
                }
                Err(e) => report.problem(path, e.to_string()),
            }
        }
        ValueKind::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                decrypt_all(item, key, &format!("{path}[{i}]"), report, revealed);
            }
        }
        ValueKind::Table(table) => {
            // Sorted: the same file gives the same report on every run.
            let mut entries: Vec<_> = table.iter_mut().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (name, item) in entries {
                let child = super::report::join(path, name);
                decrypt_all(item, key, &child, report, revealed);
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

impl Scope<'_> {
    /// The secret at `name`, given inline or as `<name>_file` (relative to the
    /// configuration file, and readable by its owner only).
    pub(super) fn secret(
        &mut self,
        name: &str,
        inline: Option<&str>,
        file: Option<&str>,
    ) -> Result<Option<String>, Reported> {
        let file_key = format!("{name}_file");
        match (inline, file) {
            (Some(_), Some(_)) => {
                let key = self.key(name);
                self.problem(name, format!("give either {key} or {key}_file, not both"));
                Err(Reported)
            }
            (Some(v), None) => Ok(Some(v.to_owned())),
            (None, Some(file)) => {
                let path = self.resolve(file);
                if let Err(e) = crate::crypto::check_private_file(&path)
                    && path.exists()
                {
                    self.problem(&file_key, crate::telemetry::Chain(&e).to_string());
                    return Err(Reported);
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text.trim().to_owned())),
                    Err(e) => {
                        self.problem(&file_key, format!("cannot read {}: {e}", path.display()));
                        Err(Reported)
                    }
                }
            }
            (None, None) => Ok(None),
        }
    }

    /// The 32-byte random key written at `name` in base64url, as `keygen` prints it.
    pub(super) fn random_key(&mut self, name: &str, text: &str) -> Option<Secret<[u8; 32]>> {
        match b64url_decode(text).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()) {
            Some(bytes) if crate::crypto::is_degenerate(&bytes) => {
                self.problem(name, DEGENERATE);
                None
            }
            Some(bytes) => Some(Secret::new(bytes)),
            None => {
                self.problem(name, NOT_A_KEY);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::Origin;
    use crate::crypto::{b64url_encode, random_bytes};

    fn string(text: &str) -> Value {
        Value::new(None, text)
    }

    fn table(entries: Vec<(&str, Value)>) -> Value {
        let map: config::Map<String, Value> = entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Value::new(None, ValueKind::Table(map))
    }

    fn as_text(value: &Value) -> &str {
        match &value.kind {
            ValueKind::String(text) => text,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn enc_values_round_trip_and_fail_without_revealing_anything() {
        let key = b64url_encode(&random_bytes::<32>());
        let sealer = parse_key(&key).unwrap();
        let mut value = table(vec![(
            "a",
            table(vec![
                ("b", string(&encrypt(&sealer, "s3cret"))),
                (
                    "c",
                    Value::new(
                        None,
                        ValueKind::Array(vec![string("plain"), string(&encrypt(&sealer, "x"))]),
                    ),
                ),
            ]),
        )]);
        let mut report = Report::new(Origin::Text("t".into()), BTreeSet::new());
        let mut revealed = Vec::new();
        decrypt_all(&mut value, Some(&key), "", &mut report, &mut revealed);
        assert_eq!(revealed, ["s3cret", "x"]);
        let ValueKind::Table(root) = &value.kind else {
            panic!("a table")
        };
        let ValueKind::Table(a) = &root["a"].kind else {
            panic!("a table")
        };
        assert_eq!(as_text(&a["b"]), "s3cret");
        let ValueKind::Array(c) = &a["c"].kind else {
            panic!("an array")
        };
        assert_eq!(as_text(&c[1]), "x");
        assert!(report.finish(Some(()), &revealed).is_ok());

        let mut value = table(vec![("a", string(&encrypt(&sealer, "s3cret")))]);
        let other = b64url_encode(&random_bytes::<32>());
        let mut report = Report::new(Origin::Text("t".into()), BTreeSet::new());
        decrypt_all(&mut value, Some(&other), "", &mut report, &mut revealed);
        decrypt_all(&mut value, None, "", &mut report, &mut revealed);
        let problems = report.finish(Some(()), &[]).unwrap_err().problems;
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].key, "a");
        assert!(problems[0].message.contains("wrong key"), "{problems:?}");
        assert!(problems[1].message.contains("is not set"), "{problems:?}");
        assert!(problems.iter().all(|p| !p.message.contains("s3cret")));
        assert_eq!(parse_key("short").err(), Some(KeyError::NotBase64));
        assert_eq!(parse_key("AAAA").err(), Some(KeyError::WrongLength));
        let zeros = b64url_encode(&[0; 32]);
        assert_eq!(parse_key(&zeros).err(), Some(KeyError::Degenerate));
    }
}
