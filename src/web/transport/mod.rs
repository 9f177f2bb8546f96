//! Accepting connections: plain TCP or TLS (rustls; HTTP/1.1 and HTTP/2 by ALPN), within
//! the connection slots of [`slots`], each connection watched by [`connection`].
//!
//! TLS handshakes run in their own tasks, with a deadline, so a client that stalls in
//! the handshake holds one connection slot for a few seconds and never the accept loop.

mod connection;
mod frames;
mod slots;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use connection::Stream;
pub use connection::{Connection, ConnectionLimits};
pub use slots::{ConnectionStats, Slots};

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection's peer, as handlers see it through `ConnectInfo<PeerAddr>`.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, CasListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, CasListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Hands accepted (and, with TLS, handshaken) connections to `axum::serve`.
pub struct CasListener {
    ready: mpsc::Receiver<(Connection, SocketAddr)>,
    local: SocketAddr,
}

impl CasListener {
    /// Starts accepting on `tcp`, within `slots`.
    pub fn new(
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        slots: Arc<Slots>,
        limits: ConnectionLimits,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = slots.room() => {}
                    () = tx.closed() => break,
                }
                let (tcp_stream, peer) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => break,
                };
                // Refused: closed at once, before any TLS or HTTP work.
                let Some(slot) = slots.admit(peer.ip()) else {
                    continue;
                };
                let _ = tcp_stream.set_nodelay(true);
                match &acceptor {
                    None => {
                        let stream = Stream::Plain(tcp_stream);
                        let connection = Connection::new(stream, slot, limits.clone());
                        if tx.send((connection, peer)).await.is_err() {
                            break;
                        }
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let tx = tx.clone();
                        let limits = limits.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(
                                HANDSHAKE_TIMEOUT,
                                acceptor.accept(tcp_stream),
                            )
                            .await
                            {
                                Ok(Ok(tls)) => {
                                    let stream = Stream::Tls(Box::new(tls));
                                    let connection = Connection::new(stream, slot, limits);
                                    let _ = tx.send((connection, peer)).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
        Ok(Self { ready, local })
    }
}

impl Listener for CasListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The acceptor only stops when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
