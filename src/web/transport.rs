//! Accepting connections: plain TCP or TLS (rustls; HTTP/1.1 and HTTP/2 by ALPN), with a
//! cap on connections served at once.
//!
//! TLS handshakes run in their own tasks, with a deadline, so a client that stalls in
//! the handshake holds one connection slot for a few seconds and never the accept loop.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

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

/// Limits on one connection: how long it may sit idle, and how long a request head
/// (request line and headers) may take to arrive once it has begun.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub idle: Duration,
    pub head: Duration,
}

/// An accepted connection, holding its slot until dropped. A connection on which
/// nothing is read or written for `idle` is closed, so idle keep-alive clients cannot
/// hold every slot; and an HTTP/1 request head that is still incomplete `head` after its
/// first byte closes it too, so a client trickling header bytes (which keeps the idle
/// timer at bay, and which the request timeout does not see: it starts once the headers
/// are in) cannot hold a slot either.
pub struct Connection {
    stream: Stream,
    _slot: OwnedSemaphorePermit,
    limits: ConnectionLimits,
    deadline: Pin<Box<tokio::time::Sleep>>,
    head: Head,
    head_deadline: Pin<Box<tokio::time::Sleep>>,
}

/// Where the connection is in its current HTTP/1 request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nothing read yet (a new connection, or a response has been written since).
    Awaiting { first: bool },
    /// Reading a head: `newlines` counts consecutive line ends (`\r` ignored); two end it.
    Reading { newlines: u8 },
    /// The head is in; what follows is the body.
    Complete,
    /// HTTP/2, whose frames are not watched here.
    Off,
}

impl Connection {
    fn new(stream: Stream, slot: OwnedSemaphorePermit, limits: ConnectionLimits) -> Self {
        Self {
            stream,
            _slot: slot,
            limits,
            deadline: Box::pin(tokio::time::sleep(limits.idle)),
            head: Head::Awaiting { first: true },
            head_deadline: Box::pin(tokio::time::sleep(limits.head)),
        }
    }

    /// Follows the request head through the bytes just read.
    fn watch_head(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Head::Awaiting { first } = self.head {
            if first && bytes.starts_with(b"PRI ") {
                // The HTTP/2 connection preface.
                self.head = Head::Off;
                return;
            }
            self.head = Head::Reading { newlines: 0 };
            let at = tokio::time::Instant::now() + self.limits.head;
            self.head_deadline.as_mut().reset(at);
        }
        let Head::Reading { mut newlines } = self.head else {
            return;
        };
        for &b in bytes {
            match b {
                b'\n' => newlines += 1,
                b'\r' => {}
                _ => newlines = 0,
            }
            if newlines == 2 {
                self.head = Head::Complete;
                return;
            }
        }
        self.head = Head::Reading { newlines };
    }

    /// With the stream pending: has the current head taken too long?
    fn head_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.head, Head::Reading { .. }) && self.head_deadline.as_mut().poll(cx).is_ready()
    }

    /// Any progress pushes the deadline back.
    fn progressed(&mut self) {
        let next = tokio::time::Instant::now() + self.limits.idle;
        self.deadline.as_mut().reset(next);
    }

    /// With the stream pending: has the connection been idle too long?
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Hands accepted (and, with TLS, handshaken) connections to `axum::serve`.
pub struct CasListener {
    ready: mpsc::Receiver<(Connection, SocketAddr)>,
    local: SocketAddr,
}

impl CasListener {
    /// Starts accepting on `tcp`; at most `max_connections` are open at once.
    pub fn new(
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        max_connections: usize,
        limits: ConnectionLimits,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(max_connections.max(1)));
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = tx.closed() => break,
                };
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
                let _ = tcp_stream.set_nodelay(true);
                match &acceptor {
                    None => {
                        let connection = Connection::new(Stream::Plain(tcp_stream), slot, limits);
                        if tx.send((connection, peer)).await.is_err() {
                            break;
                        }
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(
                                HANDSHAKE_TIMEOUT,
                                acceptor.accept(tcp_stream),
                            )
                            .await
                            {
                                Ok(Ok(tls)) => {
                                    let connection =
                                        Connection::new(Stream::Tls(Box::new(tls)), slot, limits);
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

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(result) => {
                this.progressed();
                if result.is_ok() {
                    this.watch_head(&buf.filled()[before..]);
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.head_overdue(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            ))),
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle connection closed",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if polled.is_ready() {
            this.progressed();
        }
        // An answer is going out: the next bytes read begin the next request's head.
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) && this.head != Head::Off {
            this.head = Head::Awaiting { first: false };
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
