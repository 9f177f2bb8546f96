//! The codec's secrets: decoded from configuration, or read from (and first written to)
//! the key file the server generates when none are configured.
//!
//! Key material is configuration: the codec in `tgc` receives it from here, and never
//! reads a file itself. Error messages name the file and the key, never a key's value: a
//! syntax error reports a line and column, not the line itself.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::crypto::{b64url_decode, b64url_encode, random_bytes};

pub const ENCRYPTION_KEY_LEN: usize = 32;
pub const SIGNING_KEY_LEN: usize = 64;

/// Repeated in every message about a key, since it is the fix for all of them.
const KEYGEN: &str = "generate one with `cas-server keygen`";

/// The two secrets of the codec.
#[derive(Clone)]
pub struct TgcKeys {
    pub encryption: [u8; ENCRYPTION_KEY_LEN],
    pub signing: [u8; SIGNING_KEY_LEN],
}

impl std::fmt::Debug for TgcKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TgcKeys(***)")
    }
}

/// Which of the pair a [`KeyError`] is about, named as in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyName {
    Encryption,
    Signing,
}

impl KeyName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encryption => "encryption_key",
            Self::Signing => "signing_key",
        }
    }
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a configured key cannot be used. There is no underlying error to carry: the
/// variant is the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{key} is not base64url; {KEYGEN}")]
    NotBase64 { key: KeyName },
    #[error("{key} must be {expected} bytes ({} bits) but is {actual} bytes; {KEYGEN}", expected * 8)]
    WrongLength {
        key: KeyName,
        expected: usize,
        actual: usize,
    },
    #[error("{key} is not a random key (all one byte, a repeated pattern or a sequence); {KEYGEN}")]
    NotRandom { key: KeyName },
}

impl KeyError {
    /// The key at fault, so that a caller can report it under its own configuration path.
    pub fn key(&self) -> KeyName {
        match self {
            Self::NotBase64 { key } | Self::WrongLength { key, .. } | Self::NotRandom { key } => {
                *key
            }
        }
    }
}

/// Why the key file cannot be used. Each message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: cannot read the TGC key file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot create the TGC key file: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read it; the cause names the file, its mode and the `chmod`
    /// to run.
    #[error(transparent)]
    NotPrivate(crate::crypto::FileModeError),
    #[error("{}: not a valid key file: {source}", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: KeyFileSyntax,
    },
    #[error("{}: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
}

/// A TOML error in the key file, shown as line, column and message only.
///
/// The parser's own message quotes the offending line, which here may hold a key, so it
/// is kept (for [`KeyFileSyntax::toml`]) but neither displayed nor offered as a
/// `source()`: a caller printing the whole cause chain must not print a secret.
#[derive(Debug)]
pub struct KeyFileSyntax {
    position: Option<(usize, usize)>,
    // Boxed: the parser's error is large, and every `Result` of this module carries it.
    error: Box<toml::de::Error>,
}

impl KeyFileSyntax {
    fn new(error: toml::de::Error, text: &str) -> Self {
        let position = error.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        });
        Self {
            position,
            error: Box::new(error),
        }
    }

    /// The parser's error, whose `Display` may quote a line of the file (and a key).
    pub fn toml(&self) -> &toml::de::Error {
        &self.error
    }
}

impl std::fmt::Display for KeyFileSyntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.error.message().trim_end();
        match self.position {
            Some((line, column)) => write!(f, "line {line}, column {column}: {message}"),
            None => f.write_str(message),
        }
    }
}

impl std::error::Error for KeyFileSyntax {}

impl TgcKeys {
    pub fn generate() -> Self {
        Self {
            encryption: random_bytes(),
            signing: random_bytes(),
        }
    }

    /// Decodes base64url keys, naming the problem (never the key) on failure.
    pub fn from_base64(encryption: &str, signing: &str) -> Result<Self, KeyError> {
        Ok(Self {
            encryption: decode_key(encryption, KeyName::Encryption)?,
            signing: decode_key(signing, KeyName::Signing)?,
        })
    }

    /// The keys as `[tgc]` config lines.
    pub fn to_config(&self) -> String {
        format!(
            "encryption_key = \"{}\"\nsigning_key = \"{}\"\n",
            b64url_encode(&self.encryption),
            b64url_encode(&self.signing)
        )
    }

    /// Reads the key file at `path`, or creates it (mode 0600) with fresh keys.
    /// Returns the keys and whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                crate::crypto::check_private_file(path).map_err(KeyFileError::NotPrivate)?;
                Self::parse_key_file(&text, path).map(|k| (k, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::generate();
                Self::create_key_file(path, &keys).map_err(|source| KeyFileError::Create {
                    path: path.to_owned(),
                    source,
                })?;
                Ok((keys, true))
            }
            Err(source) => Err(KeyFileError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn create_key_file(path: &Path, keys: &Self) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        // create_new: two nodes starting at once on a shared directory must not each
        // write their own keys over the other's.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path)?.write_all(
            format!(
                "# TGC keys generated by cas-server. Keep secret; copy to every node.\n{}",
                keys.to_config()
            )
            .as_bytes(),
        )
    }

    pub(crate) fn parse_key_file(text: &str, path: &Path) -> Result<Self, KeyFileError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct KeyFile {
            encryption_key: String,
            signing_key: String,
        }
        let file: KeyFile = toml::from_str(text).map_err(|e| KeyFileError::Syntax {
            path: path.to_owned(),
            source: KeyFileSyntax::new(e, text),
        })?;
        Self::from_base64(&file.encryption_key, &file.signing_key).map_err(|source| {
            KeyFileError::Key {
                path: path.to_owned(),
                source,
            }
        })
    }
}

fn decode_key<const N: usize>(text: &str, key: KeyName) -> Result<[u8; N], KeyError> {
    let bytes = b64url_decode(text).ok_or(KeyError::NotBase64 { key })?;
    let decoded = <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength {
        key,
        expected: N,
        actual: bytes.len(),
    })?;
    if crate::crypto::is_degenerate(&decoded) {
        return Err(KeyError::NotRandom { key });
    }
    Ok(decoded)
}
