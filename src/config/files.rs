//! Files the configuration names: relative paths are relative to the configuration
//! file's folder, so a config and the files beside it move together.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::report::Scope;
use super::settings::Origin;

impl Scope<'_> {
    /// `file` as a path: relative ones start at the configuration file's folder.
    pub(super) fn resolve(&self, file: &str) -> PathBuf {
        let path = PathBuf::from(file);
        match self.origin() {
            Origin::File(config) if path.is_relative() => {
                config.parent().unwrap_or(Path::new(".")).join(path)
            }
            _ => path,
        }
    }

    /// The PEM certificates (DER each) in the file written at `name`.
    pub(super) fn pem_certificates(&mut self, name: &str, file: &str) -> Option<Vec<Vec<u8>>> {
        let path = self.resolve(file);
        match std::fs::read(&path) {
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if !certs.is_empty() => {
                    Some(certs.into_iter().map(|c| c.to_vec()).collect())
                }
                _ => {
                    self.problem(
                        name,
                        format!(
                            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                            path.display()
                        ),
                    );
                    None
                }
            },
            Err(e) => {
                self.problem(name, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }
}
