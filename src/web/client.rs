//! Who is asking: the client IP (for TGC pinning) and User-Agent.
//!
//! The IP is the socket peer, unless the peer is a trusted proxy: then `X-Forwarded-For`
//! is read from the right, skipping trusted hops, and the first untrusted address is the
//! client. An untrusted peer's `X-Forwarded-For` is ignored, or anyone could claim any IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::error::WebError;
use super::transport::PeerAddr;

#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: String,
}

/// Peers whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl std::ops::Deref for TrustedProxies {
    type Target = [IpNet];

    fn deref(&self) -> &[IpNet] {
        &self.0
    }
}

// Generic over the state so that this module needs only the part it reads.
impl<S: AsRef<TrustedProxies> + Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        let peer = peer_ip(&parts.extensions)
            .ok_or_else(|| WebError::internal("no peer address on the connection"))?;
        let ip = forwarded_client(peer, &parts.headers, state.as_ref());
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

/// The client behind `peer`: the peer itself, or what a trusted proxy reports.
pub fn forwarded_client(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[IpNet],
) -> IpAddr {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    client_ip(peer, &forwarded, trusted)
}

/// Requests in flight per client forwarded by a trusted proxy. A proxy's connections
/// carry many clients, so the per-address connection cap cannot apply to it; this is
/// the same cap, counted in requests of each client it forwards.
#[derive(Debug)]
pub struct InFlight {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One request counted in [`InFlight`] until dropped.
pub struct Entered<'a> {
    table: &'a InFlight,
    client: IpAddr,
}

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request of `client`; `None` when it already has `limit` in flight.
    pub fn enter(&self, client: IpAddr) -> Option<Entered<'_>> {
        // One client per /64 for IPv6, as the login throttle counts them.
        let client = crate::protocol::throttle::ip_key(client);
        let mut counts = self.lock();
        let count = counts.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Entered {
            table: self,
            client,
        })
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut counts = self.table.lock();
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
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
    fn requests_in_flight_are_counted_per_ipv6_slash_64() {
        let in_flight = InFlight::new(1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let held = in_flight.enter(a).expect("the first request");
        assert!(
            in_flight
                .enter("2001:db8:1:2::2".parse().unwrap())
                .is_none()
        );
        assert!(
            in_flight
                .enter("2001:db8:1:3::1".parse().unwrap())
                .is_some()
        );
        drop(held);
        assert!(
            in_flight
                .enter("2001:db8:1:2::3".parse().unwrap())
                .is_some()
        );
    }

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
