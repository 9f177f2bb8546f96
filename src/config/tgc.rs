//! `[tgc]`: the ticket-granting cookie (the SSO session cookie) and its keys.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Section;
use super::keys::TgcKeys;
use super::report::Scope;
use super::server::Server;
use super::settings::Origin;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    name: String,
    secure: bool,
    same_site: String,
    pin_to_session: bool,
    crypto: String,
    encryption_key: Option<String>,
    encryption_key_file: Option<String>,
    signing_key: Option<String>,
    signing_key_file: Option<String>,
    key_file: Option<String>,
    #[serde(default)]
    previous_keys: Vec<KeyPair>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPair {
    encryption_key: String,
    signing_key: String,
}

#[derive(Debug, Clone)]
pub struct Tgc {
    pub name: String,
    pub secure: bool,
    pub same_site: SameSite,
    pub pin_to_session: bool,
    pub crypto: CryptoMode,
    pub keys: TgcKeySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Clone)]
pub enum TgcKeySource {
    /// The first pair encrypts and signs; all are accepted when reading (rotation).
    Configured(Vec<TgcKeys>),
    /// Read from, or generated once into, this file (mode 0600).
    KeyFile(PathBuf),
    /// Fresh keys at every start: sessions end on restart (demo, tests).
    Ephemeral,
}

impl Section for Raw {
    const NAME: &'static str = "tgc";
    type Checked = Tgc;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Tgc> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            cx.problem("name", "a cookie name is letters, digits, `-` and `_` only");
        }
        let same_site = match self.same_site.to_ascii_lowercase().as_str() {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => Some(SameSite::None),
            _ => {
                cx.problem(
                    "same_site",
                    format!(
                        "`{}` is not one of \"lax\", \"strict\", \"none\"",
                        self.same_site
                    ),
                );
                None
            }
        };
        if same_site == Some(SameSite::None) && !self.secure {
            cx.problem(
                "same_site",
                "\"none\" requires tgc.secure = true (browsers drop such cookies otherwise)",
            );
        }
        let crypto = match self.crypto.as_str() {
            "encrypt_and_sign" => Some(CryptoMode::EncryptAndSign),
            "sign_and_encrypt" => Some(CryptoMode::SignAndEncrypt),
            other => {
                cx.problem(
                    "crypto",
                    format!("`{other}` is not \"encrypt_and_sign\" or \"sign_and_encrypt\""),
                );
                None
            }
        };
        let keys = self.keys(cx);
        Some(Tgc {
            name: name_ok.then_some(self.name)?,
            secure: self.secure,
            same_site: same_site?,
            pin_to_session: self.pin_to_session,
            crypto: crypto?,
            keys: keys?,
        })
    }
}

impl Raw {
    /// The configured keys (and those of earlier rotations), else the key file to use,
    /// else ephemeral keys when there is no configuration file to put one beside.
    fn keys(&self, cx: &mut Scope<'_>) -> Option<TgcKeySource> {
        let encryption = cx.secret(
            "encryption_key",
            self.encryption_key.as_deref(),
            self.encryption_key_file.as_deref(),
        );
        let signing = cx.secret(
            "signing_key",
            self.signing_key.as_deref(),
            self.signing_key_file.as_deref(),
        );
        match (encryption, signing) {
            (Ok(Some(enc)), Ok(Some(sign))) => {
                // Each pair is reported under its own name: `tgc.encryption_key`, or
                // `tgc.previous_keys[1].signing_key`.
                let mut keys = Vec::new();
                let current = std::iter::once((None, enc.as_str(), sign.as_str()));
                let previous = self
                    .previous_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (Some(i), k.encryption_key.as_str(), k.signing_key.as_str()));
                for (index, e, s) in current.chain(previous) {
                    match TgcKeys::from_base64(e, s) {
                        Ok(k) => keys.push(k),
                        Err(why) => {
                            let which = why.key().as_str();
                            let why = why.to_string();
                            match index {
                                None => cx.problem(which, why),
                                Some(i) => cx.entry("previous_keys", i).problem(which, why),
                            }
                        }
                    }
                }
                (keys.len() == self.previous_keys.len() + 1)
                    .then_some(TgcKeySource::Configured(keys))
            }
            (Ok(None), Ok(None)) if !self.previous_keys.is_empty() => {
                cx.problem(
                    "previous_keys",
                    "rotation needs the current keys configured too (encryption_key, signing_key)",
                );
                None
            }
            (Ok(None), Ok(None)) => Some(match (cx.origin(), &self.key_file) {
                (_, Some(file)) => TgcKeySource::KeyFile(cx.resolve(file)),
                (Origin::File(path), None) => TgcKeySource::KeyFile(
                    path.parent()
                        .unwrap_or(Path::new("."))
                        .join("tgc-keys.toml"),
                ),
                _ => TgcKeySource::Ephemeral,
            }),
            (Ok(Some(_)), Ok(None)) | (Ok(None), Ok(Some(_))) => {
                cx.problem(
                    "",
                    "set both encryption_key and signing_key (or their *_file forms), or neither to have them generated",
                );
                None
            }
            _ => None,
        }
    }
}

/// A cookie without `Secure` is for local testing only.
pub(super) fn check_with_server(tgc: &Tgc, server: &Server, cx: &mut Scope<'_>) {
    if !tgc.secure && !server.bind.ip().is_loopback() {
        cx.problem(
            "secure",
            "false is only for local testing on a loopback address; an SSO cookie without Secure can leak over plain HTTP",
        );
    }
}

/// Which operation wraps the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CryptoMode {
    /// Encrypt, then sign the JWE (Apereo's default): the signature is checked before any
    /// decryption is attempted.
    #[default]
    EncryptAndSign,
    /// Sign, then encrypt the JWS.
    SignAndEncrypt,
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn tgc_mistakes_name_the_file_and_key() {
        let e = load_text(
            "[tgc]\nname = \"my cookie\"\nsame_site = \"none\"\nsecure = false\ncrypto = \"rot13\"\n",
        )
        .unwrap_err();
        assert_eq!(keys(&e), ["tgc.name", "tgc.same_site", "tgc.crypto"]);
        assert_problem(&e, "tgc.same_site", "requires tgc.secure = true");
        assert_problem(&e, "tgc.crypto", "`rot13` is not");
    }

    #[test]
    fn keys_of_the_wrong_length_are_refused() {
        let e =
            load_text("[tgc]\nencryption_key = \"AAAA\"\nsigning_key = \"AAAA\"\n").unwrap_err();
        assert!(e.to_string().contains("must be 32 bytes"), "{e}");
        let e = load_text("[tgc]\nencryption_key = \"AAAA\"\n").unwrap_err();
        assert!(e.to_string().contains("set both"), "{e}");
        assert_eq!(keys(&e), ["tgc"]);
    }

    #[test]
    fn rotation_needs_current_keys_and_names_the_entry_at_fault() {
        let e = load_text("[[tgc.previous_keys]]\nencryption_key = \"a\"\nsigning_key = \"b\"\n")
            .unwrap_err();
        assert_eq!(keys(&e), ["tgc.previous_keys"]);

        let enc = crate::crypto::b64url_encode(&crate::crypto::random_bytes::<32>());
        let sign = crate::crypto::b64url_encode(&crate::crypto::random_bytes::<64>());
        let e = load_text(&format!(
            "[tgc]\nencryption_key = \"{enc}\"\nsigning_key = \"{sign}\"\n\
             [[tgc.previous_keys]]\nencryption_key = \"{enc}\"\nsigning_key = \"{sign}\"\n\
             [[tgc.previous_keys]]\nencryption_key = \"{enc}\"\nsigning_key = \"short\"\n"
        ))
        .unwrap_err();
        assert_problem(&e, "tgc.previous_keys[1].signing_key", "signing_key");
        assert!(!e.to_string().contains(&enc), "{e}");
    }

    #[test]
    fn insecure_cookie_needs_a_loopback_bind() {
        let e = load_text(
            "[server]\nbind = \"0.0.0.0:8080\"\nallow_plain_http = true\n[tgc]\nsecure = false\n",
        )
        .unwrap_err();
        assert_eq!(keys(&e), vec!["tgc.secure"]);
        assert!(load_text("[tgc]\nsecure = false\n").is_ok());
    }
}
