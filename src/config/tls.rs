//! `[server.tls]`: native HTTPS. The certificate chain and key are read and matched at
//! load, so a mistake stops startup with the file named, not the first handshake.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    cert_file: String,
    key_file: String,
}

/// The server certificate chain and key, read and checked at load.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    /// The server certificate, for the names it is valid for.
    pub leaf: CertificateDer<'static>,
}

impl Tls {
    /// The host names the certificate names exactly (no wildcards), lower-case, in its
    /// order: the names this server is reached by.
    pub fn host_names(&self) -> Vec<String> {
        webpki::EndEntityCert::try_from(&self.leaf)
            .map(|cert| {
                cert.valid_dns_names()
                    .filter(|name| !name.starts_with('*'))
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `host` (a name or an IP address, without a port) is one the certificate
    /// names exactly: a wildcard would also cover other hosts of the domain.
    pub fn names_exactly(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => webpki::EndEntityCert::try_from(&self.leaf).is_ok_and(|cert| {
                cert.verify_is_valid_for_subject_name(&rustls_pki_types::ServerName::IpAddress(
                    ip.into(),
                ))
                .is_ok()
            }),
            Err(_) => self
                .host_names()
                .iter()
                .any(|name| name.eq_ignore_ascii_case(bare)),
        }
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(***)")
    }
}

impl Raw {
    /// Reads the certificate chain and key and checks that they belong together.
    pub(super) fn validate(self, cx: &mut Scope<'_>) -> Option<Tls> {
        let cert_path = cx.resolve(&self.cert_file);
        let key_path = cx.resolve(&self.key_file);
        let chain = match std::fs::read(&cert_path) {
            Err(e) => {
                cx.problem(
                    "cert_file",
                    format!("cannot read {}: {e}", cert_path.display()),
                );
                None
            }
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(chain) if !chain.is_empty() => Some(chain),
                _ => {
                    cx.problem(
                        "cert_file",
                        format!(
                            "{} holds no PEM certificate chain (-----BEGIN CERTIFICATE-----)",
                            cert_path.display()
                        ),
                    );
                    None
                }
            },
        };
        let key = match std::fs::read(&key_path) {
            Ok(_) if let Err(e) = crate::crypto::check_not_world_readable(&key_path) => {
                cx.problem("key_file", crate::telemetry::Chain(&e).to_string());
                None
            }
            Err(e) => {
                cx.problem(
                    "key_file",
                    format!("cannot read {}: {e}", key_path.display()),
                );
                None
            }
            Ok(pem) => match PrivateKeyDer::from_pem_slice(&pem) {
                Ok(key) => Some(key),
                Err(_) => {
                    cx.problem(
                        "key_file",
                        format!(
                            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                            key_path.display()
                        ),
                    );
                    None
                }
            },
        };
        let (chain, key) = (chain?, key?);
        let leaf = chain[0].clone();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key));
        match config {
            Ok(mut config) => {
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Some(Tls {
                    config: Arc::new(config),
                    leaf,
                })
            }
            Err(e) => {
                cx.problem(
                    "key_file",
                    format!(
                        "{} does not fit the certificate in {} ({e})",
                        key_path.display(),
                        cert_path.display()
                    ),
                );
                None
            }
        }
    }
}

// Each mistake with real certificates is covered by `tests/it/tls.rs`, which has a test
// PKI; these need no certificate.
#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn tls_mistakes_name_the_file_and_key() {
        let e = load_text(
            "[server.tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
        )
        .unwrap_err();
        assert_eq!(keys(&e), ["server.tls.cert_file", "server.tls.key_file"]);
        assert_problem(
            &e,
            "server.tls.cert_file",
            "cannot read /nonexistent/cert.pem",
        );

        let e = load_text("[server.tls]\ncert_file = \"c.pem\"\n").unwrap_err();
        assert_problem(&e, "server.tls", "missing field `key_file`");
    }
}
