//! `[http_client]`: the client for outbound calls (proxy callbacks, single logout).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    connect_timeout: String,
    read_timeout: String,
    trust_store: Option<String>,
    verify_hostname: bool,
    allow_local_urls: bool,
    authority_pattern: Option<String>,
    proxy: Option<String>,
    default_headers: BTreeMap<String, String>,
}

/// The outbound HTTP client (proxy callbacks, single logout).
#[derive(Clone)]
pub struct HttpClient {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Extra trusted CA certificates (DER), used together with the system roots.
    pub extra_roots: Vec<Vec<u8>>,
    pub verify_hostname: bool,
    /// Allow loopback, private and link-local destinations (refused by default).
    pub allow_local_urls: bool,
    /// When set, the `host[:port]` of every outbound URL must match it (anchored).
    pub authority_pattern: Option<regex::Regex>,
    /// `host:port` of an HTTP proxy for outbound calls.
    pub proxy: Option<String>,
    pub default_headers: Vec<(String, String)>,
}

/// Header values may be credentials (`Authorization`): names only.
impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("extra_roots", &self.extra_roots.len())
            .field("verify_hostname", &self.verify_hostname)
            .field("allow_local_urls", &self.allow_local_urls)
            .field("authority_pattern", &self.authority_pattern)
            .field("proxy", &self.proxy)
            .field(
                "default_headers",
                &self
                    .default_headers
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Section for Raw {
    const NAME: &'static str = "http_client";
    type Checked = HttpClient;

    fn validate(self, cx: &mut Scope<'_>) -> Option<HttpClient> {
        let connect_timeout = cx.duration("connect_timeout", &self.connect_timeout);
        let read_timeout = cx.duration("read_timeout", &self.read_timeout);
        let extra_roots = match self.trust_store {
            None => Some(Vec::new()),
            Some(file) => cx.pem_certificates("trust_store", &file),
        };
        let authority_pattern = match self.authority_pattern {
            None => Some(None),
            Some(re) => cx.regex("authority_pattern", &re).map(Some),
        };
        let proxy = match self.proxy {
            None => Some(None),
            // Not quoted back: a value with credentials in it (user:pw@host) is refused
            // without being printed.
            Some(p) => match p.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty()
                        && !host.contains(['/', '@'])
                        && port.parse::<u16>().is_ok() =>
                {
                    Some(Some(p))
                }
                _ => {
                    cx.problem(
                        "proxy",
                        "is not host:port (e.g. \"proxy.example.org:3128\"); credentials are not supported",
                    );
                    None
                }
            },
        };
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let mut default_headers = Vec::new();
        for (name, value) in self.default_headers {
            let mut headers = cx.at("default_headers");
            if name.is_empty() || !name.chars().all(token) {
                headers.problem(&name, "is not a valid HTTP header name");
            } else if value.chars().any(|c| c.is_control() || !c.is_ascii()) {
                headers.problem(&name, "the value must be printable ASCII");
            } else {
                default_headers.push((name, value));
            }
        }
        Some(HttpClient {
            connect_timeout: connect_timeout?,
            read_timeout: read_timeout?,
            extra_roots: extra_roots?,
            verify_hostname: self.verify_hostname,
            allow_local_urls: self.allow_local_urls,
            authority_pattern: authority_pattern?,
            proxy: proxy?,
            default_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn http_client_mistakes_are_reported_together() {
        let e = load_text(
            "[http_client]\ntrust_store = \"/nonexistent/ca.pem\"\nproxy = \"no-port\"\nauthority_pattern = \"(\"\nread_timeout = \"soon\"\ndefault_headers = { \"Bad Header\" = \"x\" }\n",
        )
        .unwrap_err();
        let k = keys(&e);
        for expected in [
            "http_client.trust_store",
            "http_client.proxy",
            "http_client.authority_pattern",
            "http_client.read_timeout",
            "http_client.default_headers.Bad Header",
        ] {
            assert!(k.contains(&expected), "{expected} missing: {e}");
        }
        assert_problem(&e, "http_client.proxy", "is not host:port");
    }

    #[test]
    fn a_trust_store_must_hold_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let e = load_text(&format!(
            "[http_client]\ntrust_store = \"{}\"\n",
            bad.display()
        ))
        .unwrap_err();
        assert_eq!(keys(&e), vec!["http_client.trust_store"]);
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn outbound_header_values_stay_out_of_debug_output() {
        let s =
            load_text("[http_client]\ndefault_headers = { Authorization = \"Bearer s3cret\" }\n")
                .unwrap();
        let printed = format!("{:?}", s.http_client);
        assert!(
            printed.contains("Authorization") && !printed.contains("s3cret"),
            "{printed}"
        );
    }
}
