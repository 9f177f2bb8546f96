//! `[server]`: where the server listens and how much one request or client may take.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::report::Scope;
use super::settings::Origin;
use super::{Section, tls};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    bind: String,
    base_path: String,
    trusted_proxies: Vec<String>,
    request_timeout: String,
    max_body_bytes: usize,
    max_header_bytes: usize,
    max_connections: usize,
    max_connections_per_client: usize,
    allow_plain_http: bool,
    http_redirect_bind: Option<String>,
    tls: Option<tls::Raw>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub bind: SocketAddr,
    /// `""` for the root, otherwise `/cas`-style: leading slash, no trailing slash.
    pub base_path: String,
    pub trusted_proxies: Vec<IpNet>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Connections served at once; more wait in the kernel's accept queue, and idle ones
    /// are closed to let them in.
    pub max_connections: usize,
    /// Connections one client address may hold (requests in flight, for clients behind
    /// a trusted proxy); at most `max_connections`.
    pub max_connections_per_client: usize,
    /// Native HTTPS; `None` serves plain HTTP (behind a TLS-terminating proxy).
    pub tls: Option<tls::Tls>,
    /// A plain-HTTP listener that only redirects to HTTPS.
    pub http_redirect_bind: Option<SocketAddr>,
}

impl Section for Raw {
    const NAME: &'static str = "server";
    type Checked = Server;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Server> {
        let demo = *cx.origin() == Origin::Demo;
        let bind = match self.bind.parse::<SocketAddr>() {
            Ok(addr) => {
                if demo && !addr.ip().is_loopback() {
                    cx.problem(
                        "bind",
                        format!(
                            "the built-in demo config only listens on loopback (it has a demo user with a published password); write your own config and pass it with --config to listen on {addr}"
                        ),
                    );
                }
                Some(addr)
            }
            Err(_) => {
                cx.problem(
                    "bind",
                    format!(
                        "`{}` is not an address:port; write e.g. \"127.0.0.1:8080\" or \"[::]:8443\"",
                        self.bind
                    ),
                );
                None
            }
        };
        let base_path = self.base_path.trim_end_matches('/').to_owned();
        let base_ok = base_path.is_empty()
            || (base_path.starts_with('/')
                && base_path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.')));
        if !base_ok {
            cx.problem(
                "base_path",
                format!(
                    "`{}` is not a URL path; write e.g. \"/cas\" or \"/\"",
                    self.base_path
                ),
            );
        }
        let mut trusted_proxies = Vec::new();
        for (i, text) in self.trusted_proxies.iter().enumerate() {
            match text.trim().parse::<IpNet>() {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => match text.trim().parse::<IpAddr>() {
                    Ok(ip) => trusted_proxies.push(IpNet::from(ip)),
                    Err(_) => cx.entry("trusted_proxies", i).problem(
                        "",
                        format!(
                            "`{text}` is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")"
                        ),
                    ),
                },
            }
        }
        let request_timeout = cx.duration("request_timeout", &self.request_timeout);
        cx.within("max_body_bytes", self.max_body_bytes, 1..=64 << 20);
        cx.within("max_header_bytes", self.max_header_bytes, 1..=1 << 20);
        cx.within("max_connections", self.max_connections, 1..=1_000_000);
        cx.within(
            "max_connections_per_client",
            self.max_connections_per_client,
            1..=1_000_000,
        );
        let tls = match self.tls {
            None => Some(None),
            Some(tls) => tls.validate(&mut cx.at("tls")).map(Some),
        };
        let http_redirect_bind = match self.http_redirect_bind {
            None => Some(None),
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) if tls.as_ref().is_some_and(Option::is_some) => Some(Some(addr)),
                Ok(_) => {
                    cx.problem(
                        "http_redirect_bind",
                        "redirects to HTTPS, so it needs [server.tls]",
                    );
                    None
                }
                Err(_) => {
                    cx.problem(
                        "http_redirect_bind",
                        format!("`{text}` is not an address:port, e.g. \"0.0.0.0:80\""),
                    );
                    None
                }
            },
        };
        // All CAS traffic over HTTPS (the CAS security guide): plain HTTP is for loopback,
        // or behind the TLS-terminating proxies listed as trusted.
        if let (Some(addr), Some(None)) = (bind, &tls)
            && !addr.ip().is_loopback()
            && trusted_proxies.is_empty()
            && !self.allow_plain_http
            && !demo
        {
            cx.problem(
                "bind",
                format!(
                    "{addr} is not loopback and serves plain HTTP: passwords and SSO cookies would cross the network in clear; configure [server.tls], or bind to loopback behind a TLS proxy (listed in server.trusted_proxies), or set server.allow_plain_http = true if the network is protected otherwise"
                ),
            );
        }
        Some(Server {
            bind: bind?,
            base_path: base_ok.then_some(base_path)?,
            trusted_proxies,
            request_timeout: request_timeout?,
            max_body_bytes: self.max_body_bytes,
            max_header_bytes: self.max_header_bytes,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client.min(self.max_connections),
            tls: tls?,
            http_redirect_bind: http_redirect_bind?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn server_mistakes_name_the_file_and_key() {
        let e = load_text(
            "[server]\nbind = \"localhost\"\nbase_path = \"cas app\"\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy\"]\nrequest_timeout = \"0s\"\nmax_body_bytes = 0\n",
        )
        .unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "server.bind",
                "server.base_path",
                "server.trusted_proxies[1]",
                "server.request_timeout",
                "server.max_body_bytes"
            ]
        );
        assert_problem(&e, "server.trusted_proxies[1]", "not an IP address");
        assert_problem(&e, "server.request_timeout", "longer than zero");
    }

    #[test]
    fn the_base_path_loses_its_trailing_slash_and_per_client_connections_are_capped() {
        let s = load_text(
            "[server]\nbase_path = \"/\"\nmax_connections = 8\nmax_connections_per_client = 100\n",
        )
        .unwrap();
        assert_eq!(s.server.base_path, "");
        assert_eq!(s.server.max_connections_per_client, 8);
    }
}
