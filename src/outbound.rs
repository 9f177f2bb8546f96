//! The one outbound HTTP client: proxy-granting callbacks and single-logout messages.
//!
//! Every call the server makes on a client's say-so (a `pgtUrl` is chosen by whoever
//! validates a ticket) is a server-side request forgery risk, so the client is closed by
//! default: TLS certificates and host names are verified, redirects are never followed,
//! timeouts are short, and loopback, private and link-local destinations are refused,
//! both as IP literals and after DNS resolution (a name that resolves to 127.0.0.1 is
//! refused too). `allow_local_urls` lifts that last rule for internal deployments.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use tokio::sync::{Semaphore, mpsc};

use crate::config::{HttpClient, Slo};
use crate::protocol::{CallbackError, LogoutMessage, LogoutSender, ProxyCallback};

/// Why an outbound call did not happen or did not succeed. Texts never contain the
/// request URL's query (which carries PGTs).
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// Without its URL, which may carry a PGT.
    #[error("the request failed")]
    Transport(#[source] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
}

/// The outbound client cannot be built from `[http_client]`.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("http_client.trust_store holds an unusable certificate")]
    TrustStore(#[source] reqwest::Error),
    #[error("http_client.default_headers: `{0}` is not a header name")]
    HeaderName(String, #[source] reqwest::header::InvalidHeaderName),
    #[error("http_client.default_headers: the value of `{0}` is not a header value")]
    HeaderValue(String, #[source] reqwest::header::InvalidHeaderValue),
    #[error("http_client.proxy is not usable")]
    Proxy(#[source] reqwest::Error),
    #[error("the outbound HTTP client cannot be built")]
    Client(#[source] reqwest::Error),
}

#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_local_urls: bool,
    authority_pattern: Option<regex::Regex>,
    /// Through an HTTP proxy the proxy resolves names, so they are checked here first.
    proxied: bool,
}

impl Outbound {
    pub fn new(settings: &HttpClient) -> Result<Self, ClientSetupError> {
        let mut roots: Vec<reqwest::Certificate> = Vec::new();
        // System roots are loaded here rather than left to the platform verifier, so that
        // the same trust store serves with or without host-name verification.
        roots.extend(
            crate::crypto::system_roots()
                .iter()
                .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
        );
        for der in &settings.extra_roots {
            roots.push(reqwest::Certificate::from_der(der).map_err(ClientSetupError::TrustStore)?);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.default_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientSetupError::HeaderName(name.clone(), e))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ClientSetupError::HeaderValue(name.to_string(), e))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .tls_certs_only(roots)
            .tls_danger_accept_invalid_hostnames(!settings.verify_hostname)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .timeout(settings.connect_timeout + settings.read_timeout)
            .user_agent(concat!("cas-server/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            // With a proxy, only the proxy's own name is resolved here (an internal proxy
            // is normal); targets are checked in `admit`.
            .dns_resolver(GuardedResolver {
                allow_local: settings.allow_local_urls || settings.proxy.is_some(),
            });
        builder = match &settings.proxy {
            Some(proxy) => builder.proxy(
                reqwest::Proxy::all(format!("http://{proxy}")).map_err(ClientSetupError::Proxy)?,
            ),
            None => builder.no_proxy(),
        };
        let client = builder.build().map_err(ClientSetupError::Client)?;
        Ok(Self {
            client,
            allow_local_urls: settings.allow_local_urls,
            authority_pattern: settings.authority_pattern.clone(),
            proxied: settings.proxy.is_some(),
        })
    }

    /// Checks `url` against the destination rules before any connection is made.
    async fn admit(&self, url: &str) -> Result<reqwest::Url, OutboundError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| OutboundError::Refused(format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(OutboundError::Refused("only http(s) URLs".into()));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| OutboundError::Refused("no host".into()))?;
        if let Some(pattern) = &self.authority_pattern {
            let authority = match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            if !pattern.is_match(&authority) {
                return Err(OutboundError::Refused(format!(
                    "{authority} is outside http_client.authority_pattern"
                )));
            }
        }
        if self.allow_local_urls {
            return Ok(parsed);
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if is_local(ip) {
                return Err(OutboundError::Refused(format!(
                    "{ip} is a local address (set http_client.allow_local_urls to reach it)"
                )));
            }
        } else if self.proxied {
            let port = parsed.port_or_known_default().unwrap_or(443);
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((literal, port))
                .await
                .map_err(|source| OutboundError::Resolve {
                    host: literal.to_owned(),
                    source,
                })?
                .collect();
            if resolved.iter().any(|a| is_local(a.ip())) {
                return Err(OutboundError::Refused(format!(
                    "{literal} resolves to a local address (set http_client.allow_local_urls to reach it)"
                )));
            }
        }
        Ok(parsed)
    }

    /// GETs `url`; `Ok` only for HTTP 200.
    pub async fn get_expecting_200(&self, url: &str) -> Result<(), OutboundError> {
        let url = self.admit(url).await?;
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| OutboundError::Transport(e.without_url()))?;
        match response.status().as_u16() {
            200 => Ok(()),
            other => Err(OutboundError::Status(other)),
        }
    }
}

impl Outbound {
    /// POSTs a form; `Ok` for any 2xx (SLO-08: clients answer 2xx to logout messages).
    pub async fn post_form(&self, url: &str, body: String) -> Result<(), OutboundError> {
        let url = self.admit(url).await?;
        let response = self
            .client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| OutboundError::Transport(e.without_url()))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(OutboundError::Status(status.as_u16())),
        }
    }
}

/// Counters of the single-logout queue, for `/health` and operators.
#[derive(Debug, Default)]
pub struct SloStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// Applications a full session history forgot: never sent a message.
    pub forgotten: AtomicU64,
}

/// The back-channel single-logout sender: a bounded queue in front of a bounded pool of
/// concurrent sends. `send` never waits: when the queue is full the message is dropped
/// and counted, because a logout must not be slowed by slow or dead applications
/// (SLO-04). Failed messages are logged and never retried.
#[derive(Debug)]
pub struct SloQueue {
    queue: mpsc::Sender<LogoutMessage>,
    stats: Arc<SloStats>,
    pending: Arc<Pending>,
}

/// Messages accepted and not yet finished (queued, or being sent), so that a shutdown
/// can wait for them.
#[derive(Debug, Default)]
struct Pending {
    count: AtomicU64,
    idle: tokio::sync::Notify,
}

impl Pending {
    fn finished(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl SloQueue {
    /// Starts the dispatcher; it stops when the queue's last sender is dropped.
    pub fn start(outbound: Outbound, slo: &Slo) -> Arc<Self> {
        let (queue, mut pending) = mpsc::channel::<LogoutMessage>(slo.queue_capacity);
        let stats = Arc::new(SloStats::default());
        let workers = Arc::new(Semaphore::new(slo.workers));
        let timeout = slo.timeout;
        let counters = stats.clone();
        let accepted = Arc::new(Pending::default());
        let in_flight = accepted.clone();
        tokio::spawn(async move {
            while let Some(message) = pending.recv().await {
                let Ok(permit) = workers.clone().acquire_owned().await else {
                    break;
                };
                let outbound = outbound.clone();
                let counters = counters.clone();
                let in_flight = in_flight.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let body = form_urlencoded::Serializer::new(String::new())
                        .append_pair("logoutRequest", &message.logout_request)
                        .finish();
                    let outcome =
                        tokio::time::timeout(timeout, outbound.post_form(&message.url, body)).await;
                    match outcome {
                        Ok(Ok(())) => {
                            counters.sent.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(url = %message.url, "single-logout message delivered");
                        }
                        Ok(Err(e)) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(url = %message.url, error = %crate::telemetry::Chain(&e), "single-logout message failed; not retried");
                        }
                        Err(_) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(url = %message.url, timeout = ?timeout, "single-logout message timed out; not retried");
                        }
                    }
                    in_flight.finished();
                });
            }
        });
        Arc::new(Self {
            queue,
            stats,
            pending: accepted,
        })
    }

    /// At shutdown, after the last request: waits at most `grace` for the messages
    /// already accepted to be sent (or to fail). What is left is logged and counted as
    /// dropped rather than lost without a word; returns how many.
    pub async fn drain(&self, grace: std::time::Duration) -> u64 {
        let all_sent = async {
            loop {
                let idle = self.pending.idle.notified();
                tokio::pin!(idle);
                // Registered before the check, so a wake-up between the two is not missed.
                idle.as_mut().enable();
                if self.pending.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let waiting = self.pending.count.load(Ordering::Acquire);
        if tokio::time::timeout(grace, all_sent).await.is_ok() {
            if waiting > 0 {
                tracing::info!(
                    messages = waiting,
                    "shutdown: queued single-logout messages sent"
                );
            }
            return 0;
        }
        let left = self.pending.count.load(Ordering::Acquire);
        self.stats.dropped.fetch_add(left, Ordering::Relaxed);
        tracing::warn!(
            messages = left,
            grace = ?grace,
            "shutdown: single-logout messages not sent within slo.shutdown_grace; dropped"
        );
        left
    }

    pub fn stats(&self) -> Arc<SloStats> {
        self.stats.clone()
    }
}

impl LogoutSender for SloQueue {
    fn forgotten(&self, _service: &str) {
        self.stats.forgotten.fetch_add(1, Ordering::Relaxed);
    }

    fn send(&self, message: LogoutMessage) {
        // Counted before it is queued: a fast sender could finish it before the count.
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        let result = self.queue.try_send(message);
        if result.is_err() {
            self.pending.finished();
        }
        match result {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    url = %message.url,
                    dropped_total = dropped,
                    "single-logout queue full; message dropped (raise slo.queue_capacity or slo.workers)"
                );
            }
            Err(mpsc::error::TrySendError::Closed(message)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %message.url, "single-logout sender stopped; message dropped");
            }
        }
    }
}

#[async_trait]
impl ProxyCallback for Outbound {
    async fn deliver(&self, url: &str) -> Result<(), CallbackError> {
        self.get_expecting_200(url)
            .await
            .map_err(|e| CallbackError(Box::new(e)))
    }
}

/// Loopback, private, link-local, unspecified, shared (CGNAT), multicast and broadcast
/// addresses: everything that is not a public unicast destination.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [h1, h2] = hi.to_be_bytes();
                let [l1, l2] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(h1, h2, l1, l2))
            };
            // Forms that carry an IPv4 address reach it: judge that address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let compatible =
                s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified();
            if nat64 || compatible {
                return is_local(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_local(embedded(s[1], s[2]));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // Local-use NAT64 (RFC 8215): a translator of the site's own choosing.
                || s[..3] == [0x64, 0xff9b, 1]
        }
    }
}

/// Resolves names and drops local addresses unless they are allowed, so DNS cannot be
/// used to point an outbound call at an internal host.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    allow_local: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let admitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| allow_local || !is_local(addr.ip()))
                .collect();
            if admitted.is_empty() {
                return Err(format!(
                    "{host} resolves only to local addresses (set http_client.allow_local_urls to reach them)"
                )
                .into());
            }
            Ok(Box::new(admitted.into_iter()) as Addrs)
        })
    }
}

/// Shared handle, as the protocol layer holds it.
pub fn callback(outbound: &Outbound) -> Arc<dyn ProxyCallback> {
    Arc::new(outbound.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_recognised() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
            "64:ff9b:1::808:808",
        ] {
            assert!(is_local(local.parse().unwrap()), "{local}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_local(public.parse().unwrap()), "{public}");
        }
    }

    fn settings() -> HttpClient {
        HttpClient {
            connect_timeout: std::time::Duration::from_secs(1),
            read_timeout: std::time::Duration::from_secs(1),
            extra_roots: vec![],
            verify_hostname: true,
            allow_local_urls: false,
            authority_pattern: Some(
                regex::Regex::new(r"^(?:[a-z.]+\.example\.org(:\d+)?|127\.0\.0\.1:\d+)$").unwrap(),
            ),
            proxy: None,
            default_headers: vec![],
        }
    }

    #[tokio::test]
    async fn literal_local_addresses_and_foreign_authorities_are_refused_before_connecting() {
        let out = Outbound::new(&settings()).unwrap();
        let e = out
            .get_expecting_200("https://127.0.0.1:9/cb?pgtId=PGT-secret")
            .await
            .unwrap_err();
        assert!(matches!(e, OutboundError::Refused(_)), "{e}");
        assert!(!e.to_string().contains("PGT-secret"));
        let e = out
            .get_expecting_200("https://evil.example.net/cb")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("authority_pattern"), "{e}");
        assert!(matches!(
            out.get_expecting_200("ftp://a.example.org/").await,
            Err(OutboundError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_after_resolution() {
        let mut s = settings();
        s.authority_pattern = None;
        let out = Outbound::new(&s).unwrap();
        let e = out
            .get_expecting_200("https://localhost:9/cb")
            .await
            .unwrap_err();
        let chain = crate::telemetry::Chain(&e).to_string();
        assert!(chain.contains("local addresses"), "{chain}");
    }
}
