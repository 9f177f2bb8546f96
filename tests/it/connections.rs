//! Connection slots under attack (security review, issue 13, item 1): one client must not
//! be able to hold every slot, whether by HTTP/2 connections that only PING, by HTTP/1
//! connections kept busy with small requests, or by many connections from one address;
//! a legitimate client is served within a second throughout.
//!
//! Clients come from distinct loopback addresses (all of 127.0.0.0/8 is this machine), so
//! the per-address rules apply to them as to hosts on a network. Every loop is bounded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::*;

/// How long a legitimate client may wait for an answer.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn addr(server: &TestServer) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: IpAddr, server: &TestServer) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr(server)).await.unwrap()
}

/// A server whose connection limits are small enough to fill in a test: 8 slots, 4 per
/// address, no trusted proxy, and an idle timeout (twice the request timeout) far longer
/// than the tests, so that only the slot rules can free a slot.
async fn small_server(request_timeout: Duration) -> TestServer {
    TestServer::start_with(|s| {
        s.server.max_connections = 8;
        s.server.max_connections_per_client = 4;
        s.server.trusted_proxies.clear();
        s.server.request_timeout = request_timeout;
    })
    .await
}

/// `/health` from `from` on a new connection, within [`SERVED_WITHIN`].
async fn health_from(server: &TestServer, from: IpAddr) -> reqwest::Result<reqwest::Response> {
    server
        .http()
        .local_address(from)
        .pool_max_idle_per_host(0)
        .timeout(SERVED_WITHIN)
        .build()
        .unwrap()
        .get(server.url("/health"))
        .send()
        .await
}

/// A legitimate client asks for `/health` every 200 ms for `period`, each time on a new
/// connection; every request must be answered within a second.
async fn assert_served_throughout(server: &TestServer, from: IpAddr, period: Duration) {
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < period {
        let asked = Instant::now();
        let answer = health_from(server, from).await;
        assert!(
            answer.as_ref().is_ok_and(|r| r.status() == StatusCode::OK),
            "round {rounds}: not served within {SERVED_WITHIN:?} ({:?} elapsed): {answer:?}",
            asked.elapsed()
        );
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rounds >= 3, "{rounds} rounds");
}

async fn health_json(server: &TestServer) -> serde_json::Value {
    let body = health_from(server, ip(1))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// An HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HTTP/2 client (prior knowledge, no TLS) that sends the preface and an empty
/// SETTINGS, acknowledges the server's, then only PINGs every 200 ms. Returns when the
/// server closes the connection, or after `limit`; `true` if it was closed.
async fn ping_only(stream: TcpStream, limit: Duration) -> bool {
    ping_only_counted(stream, limit, &std::sync::atomic::AtomicUsize::new(0)).await
}

/// [`ping_only`], adding one to `served` once the server has answered on the connection
/// (it has taken a slot for it).
async fn ping_only_counted(
    mut stream: TcpStream,
    limit: Duration,
    served: &std::sync::atomic::AtomicUsize,
) -> bool {
    let mut answered = false;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(0x4, 0, 0, &[]));
    hello.extend(frame(0x4, 0x1, 0, &[]));
    if stream.write_all(&hello).await.is_err() {
        return true;
    }
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        if stream
            .write_all(&frame(0x6, 0, 0, b"pingpong"))
            .await
            .is_err()
        {
            return true;
        }
        // Read whatever the server sends (SETTINGS, PING acks) for 200 ms.
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        loop {
            match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {
                    if !std::mem::replace(&mut answered, true) {
                        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                Err(_) => break,
            }
        }
    }
    false
}

/// An HTTP/1 client that keeps its connection busy with a small real request every
/// 300 ms, reconnecting when the server closes it, until `stop` is dropped.
fn trickle_requests(
    server: &TestServer,
    from: IpAddr,
    stop: &tokio::sync::watch::Receiver<()>,
) -> JoinHandle<usize> {
    let base = addr(server);
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let mut closed = 0;
        let request = b"GET /cas/static/cas.css HTTP/1.1\r\nHost: localhost\r\n\r\n";
        'connections: for _ in 0..1000 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let Ok(mut stream) = socket.connect(base).await else {
                continue;
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if stream.write_all(request).await.is_err() {
                    closed += 1;
                    continue 'connections;
                }
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => {
                        closed += 1;
                        continue 'connections;
                    }
                }
                tokio::select! {
                    _ = stop.changed() => return closed,
                    () = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        }
        closed
    })
}

/// PINGs are not requests: an HTTP/2 connection that only PINGs is closed once idle for
/// twice the request timeout (before, every PING reset the idle timer).
#[tokio::test]
async fn an_http2_connection_that_only_pings_is_closed_when_idle() {
    let server = TestServer::start_with(|s| {
        s.server.request_timeout = Duration::from_millis(500);
    })
    .await;
    let stream = connect_from(ip(2), &server).await;

    let started = Instant::now();
    let closed = ping_only(stream, Duration::from_secs(5)).await;

    assert!(closed, "still open after 5 s of PINGs");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed for idling, not at once: {:?}",
        started.elapsed()
    );
}

/// Two addresses fill every slot with HTTP/2 connections that only PING (each within
/// its per-address cap); a third is served within a second throughout, because idle
/// connections are closed first when the server is full. Counted on `/health`.
#[tokio::test]
async fn pinging_http2_clients_cannot_hold_every_slot() {
    let (logs, _guard) = Captured::install();
    let server = small_server(Duration::from_secs(30)).await;
    let mut pingers = Vec::new();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for attacker in [ip(2), ip(3)] {
        for _ in 0..4 {
            let stream = connect_from(attacker, &server).await;
            let served = served.clone();
            pingers.push(tokio::spawn(async move {
                ping_only_counted(stream, Duration::from_secs(4), &served).await
            }));
        }
    }
    // Every slot is taken (each pinger has been answered), however slow the machine.
    for _ in 0..100 {
        if served.load(std::sync::atomic::Ordering::SeqCst) == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        8,
        "8 pinging connections served"
    );

    assert_served_throughout(&server, ip(9), Duration::from_secs(2)).await;

    let health = health_json(&server).await;
    assert!(
        health["connections"]["reclaimed"].as_u64().unwrap() >= 1,
        "{health}"
    );
    assert!(
        logs.text()
            .contains("closed an idle connection to make room"),
        "{}",
        logs.text()
    );
    for pinger in pingers {
        pinger.abort();
    }
}

/// Two addresses keep every slot busy with small HTTP/1 requests every 300 ms on each
/// connection; a third is served within a second throughout: between two requests a
/// connection is idle, and idle connections make room first.
#[tokio::test]
async fn trickled_http1_requests_cannot_hold_every_slot() {
    let server = small_server(Duration::from_secs(30)).await;
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut attackers = Vec::new();
    for attacker in [ip(2), ip(3)] {
        for _ in 0..4 {
            attackers.push(trickle_requests(&server, attacker, &stopped));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_served_throughout(&server, ip(9), Duration::from_secs(3)).await;

    drop(stop);
    let mut reconnections = 0;
    for attacker in attackers {
        reconnections += tokio::time::timeout(Duration::from_secs(10), attacker)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        reconnections >= 1,
        "the attackers' idle connections were closed"
    );
}

/// One address at its cap with every connection busy (request heads under way): its next
/// connection is closed at once, logged and counted, while another address is served.
#[tokio::test]
async fn a_client_at_its_cap_with_busy_connections_is_refused() {
    let (logs, _guard) = Captured::install();
    let server = small_server(Duration::from_secs(30)).await;
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(ip(2), &server).await;
        stream
            .write_all(b"GET /cas/health HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut fifth = connect_from(ip(2), &server).await;
    let mut buf = [0u8; 16];
    let answer = tokio::time::timeout(SERVED_WITHIN, fifth.read(&mut buf)).await;

    assert!(
        matches!(answer, Ok(Ok(0) | Err(_))),
        "closed at once: {answer:?}"
    );
    assert_eq!(
        health_from(&server, ip(3)).await.unwrap().status(),
        StatusCode::OK
    );
    let health = health_json(&server).await;
    assert_eq!(health["connections"]["refused"], 1, "{health}");
    assert!(
        logs.text().contains("refused a connection"),
        "{}",
        logs.text()
    );
    drop(busy);
}

/// Behind a trusted proxy every client arrives on the proxy's connections; the cap then
/// counts each forwarded client's requests in flight: over it, 429; other clients are
/// served.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_cap() {
    let server = TestServer::start_with(|s| {
        s.server.max_connections_per_client = 2;
        s.server.request_timeout = Duration::from_secs(30);
    })
    .await;
    // Two requests whose bodies never arrive stay in flight.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(ip(1), &server).await;
        stream
            .write_all(
                b"POST /cas/serviceValidate HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.5\r\n\
                  Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nservice=",
            )
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let proxy = |client: &str| {
        server
            .http()
            .build()
            .unwrap()
            .get(server.url("/health"))
            .header("x-forwarded-for", client)
            .timeout(SERVED_WITHIN)
            .send()
    };

    let same = proxy("203.0.113.5").await.unwrap();
    let other = proxy("198.51.100.7").await.unwrap();

    assert_eq!(same.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(same.headers()["cache-control"], "no-store");
    assert_eq!(other.status(), StatusCode::OK);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy("203.0.113.5").await.unwrap().status(), StatusCode::OK);
}
