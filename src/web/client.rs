//! Who is asking: the client IP (for TGC pinning) and User-Agent.
//!
//! The IP is the socket peer, unless the peer is a trusted proxy: then `X-Forwarded-For`
//! is read from the right, skipping trusted hops, and the first untrusted address is the
//! client. An untrusted peer's `X-Forwarded-For` is ignored, or anyone could claim any IP.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::error::WebError;
use super::state::AppState;
use super::transport::PeerAddr;

#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: String,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let peer = peer_ip(&parts.extensions)
            .ok_or_else(|| WebError::Internal("no peer address on the connection".into()))?;
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let ip = client_ip(peer, &forwarded, &state.trusted_proxies);
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Self { ip, user_agent })
    }
}

/// The socket peer's address. A dual-stack listener reports IPv4 peers as
/// `::ffff:a.b.c.d`; they are compared as the IPv4 addresses they are.
pub fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<PeerAddr>>()
        .map(|ConnectInfo(PeerAddr(addr))| addr.ip().to_canonical())
}

pub fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

fn client_ip(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(ip, trusted);
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), canonicalised.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let address = if let Some(rest) = hop.strip_prefix('[') {
        rest.split_once(']')?.0
    } else if hop.matches(':').count() == 1 {
        hop.split_once(':')?.0
    } else {
        hop
    };
    address.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let outsider: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(client_ip(outsider, &["198.51.100.7"], &trusted), outsider);
        assert_eq!(
            client_ip(peer, &["198.51.100.7"], &trusted).to_string(),
            "198.51.100.7"
        );
        assert_eq!(
            client_ip(peer, &["203.0.113.1", "198.51.100.7", "10.2.2.2"], &trusted).to_string(),
            "198.51.100.7"
        );
        assert_eq!(client_ip(peer, &["junk"], &trusted), peer);
        // Found in review: ports and IPv4-mapped forms.
        assert_eq!(
            client_ip(peer, &["198.51.100.7:5678"], &trusted).to_string(),
            "198.51.100.7"
        );
        assert_eq!(
            client_ip(peer, &["[2001:db8::1]:443"], &trusted).to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            client_ip(peer, &["::ffff:198.51.100.7"], &trusted).to_string(),
            "198.51.100.7"
        );
        assert_eq!(client_ip(peer, &[], &trusted), peer);
    }
}
