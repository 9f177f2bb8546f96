//! One accepted connection, watched as its bytes go by: whether a request is on it, how
//! long it has been idle, how long its request head is taking, and whether its slot was
//! given to another connection.
//!
//! - A connection is idle when no request is on it: an HTTP/1 connection between an answer
//!   and the next request's first byte, an HTTP/2 connection with no open stream. Only
//!   requests and answers reset its idle timer: HTTP/2 PINGs, SETTINGS and other control
//!   frames do not, so a client cannot hold a slot by pinging.
//! - An HTTP/1 request head must be complete within `head` of its first byte, so a client
//!   trickling header bytes (which the request timeout does not see: it starts once the
//!   head is in) cannot hold a slot either.
//! - A connection whose slot was reclaimed (see [`super::slots`]) reads end-of-file as
//!   soon as it is idle, and the HTTP library closes it.
//! - An answer the HTTP library writes by itself (400 for a malformed request, 414, 431)
//!   gets the security and no-store headers every other answer carries.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

use super::frames::{self, Scanner};
use super::slots::Slot;

/// Limits on one connection, and the headers added to the HTTP library's own answers.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest a connection may go without a request or an answer.
    pub idle: Duration,
    /// Longest an HTTP/1 request head may take once it has begun.
    pub head: Duration,
    /// Header lines (`name: value\r\n` each) for answers the HTTP library writes itself.
    pub error_headers: Arc<str>,
}

pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub struct Connection {
    stream: Stream,
    slot: Slot,
    limits: ConnectionLimits,
    idle_deadline: Pin<Box<Sleep>>,
    head_deadline: Pin<Box<Sleep>>,
    protocol: Protocol,
    /// An answer of the HTTP library's own, with the headers added, being written out.
    patched: Option<Patched>,
}

enum Protocol {
    Http1 {
        head: Head,
        /// An answer to the current request has begun.
        answering: bool,
    },
    Http2(Box<Http2>),
}

/// Where an HTTP/1 connection is in its current request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nothing read yet (a new connection, or an answer has been written since).
    Awaiting { first: bool },
    /// Reading a head: `newlines` counts consecutive line ends (`\r` ignored); two end it.
    Reading { newlines: u8 },
    /// The head is in; what follows is the body.
    Complete,
}

struct Http2 {
    inbound: Scanner,
    outbound: Scanner,
    /// Streams opened by the client and not yet ended by our answer or a reset.
    open: Vec<u32>,
}

/// Open streams followed per connection; a client opening more is refused by the HTTP
/// library's own stream limit long before.
const MAX_TRACKED_STREAMS: usize = 1024;

struct Patched {
    bytes: Vec<u8>,
    written: usize,
    /// How much of the caller's buffer these bytes stand for.
    consumed: usize,
}

impl Connection {
    pub(super) fn new(stream: Stream, slot: Slot, limits: ConnectionLimits) -> Self {
        slot.set_idle(true);
        Self {
            stream,
            slot,
            idle_deadline: Box::pin(tokio::time::sleep(limits.idle)),
            head_deadline: Box::pin(tokio::time::sleep(limits.head)),
            limits,
            protocol: Protocol::Http1 {
                head: Head::Awaiting { first: true },
                answering: false,
            },
            patched: None,
        }
    }

    fn is_idle(&self) -> bool {
        match &self.protocol {
            Protocol::Http1 { head, .. } => matches!(head, Head::Awaiting { .. }),
            Protocol::Http2(h2) => h2.open.is_empty(),
        }
    }

    /// A request or an answer moved: the idle timer starts again.
    fn progressed(&mut self) {
        let next = tokio::time::Instant::now() + self.limits.idle;
        self.idle_deadline.as_mut().reset(next);
    }

    fn on_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match &mut self.protocol {
            Protocol::Http1 { head, answering } => {
                if *head == (Head::Awaiting { first: true }) && bytes.starts_with(b"PRI ") {
                    // The HTTP/2 connection preface.
                    self.protocol = Protocol::Http2(Box::new(Http2 {
                        inbound: Scanner::after_preface(),
                        outbound: Scanner::default(),
                        open: Vec::new(),
                    }));
                    return self.on_read(bytes);
                }
                if let Head::Awaiting { .. } = head {
                    *head = Head::Reading { newlines: 0 };
                    *answering = false;
                    self.slot.set_idle(false);
                    let at = tokio::time::Instant::now() + self.limits.head;
                    self.head_deadline.as_mut().reset(at);
                }
                if let Head::Reading { newlines } = head {
                    for &b in bytes {
                        match b {
                            b'\n' => *newlines += 1,
                            b'\r' => {}
                            _ => *newlines = 0,
                        }
                        if *newlines == 2 {
                            *head = Head::Complete;
                            break;
                        }
                    }
                }
                self.progressed();
            }
            Protocol::Http2(h2) => {
                let mut moved = false;
                let open = &mut h2.open;
                h2.inbound.feed(bytes, |frame| match frame.kind {
                    frames::HEADERS | frames::DATA => {
                        moved = true;
                        let new_stream = frame.kind == frames::HEADERS
                            && frame.stream % 2 == 1
                            && !open.contains(&frame.stream);
                        if new_stream && open.len() < MAX_TRACKED_STREAMS {
                            open.push(frame.stream);
                        }
                    }
                    frames::RST_STREAM => open.retain(|s| *s != frame.stream),
                    _ => {}
                });
                let idle = h2.open.is_empty();
                self.slot.set_idle(idle);
                if moved {
                    self.progressed();
                }
            }
        }
    }

    fn on_written(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match &mut self.protocol {
            Protocol::Http1 { head, answering } => {
                // An answer is going out: the next bytes read begin the next request.
                *head = Head::Awaiting { first: false };
                *answering = true;
                self.slot.set_idle(true);
                self.progressed();
            }
            Protocol::Http2(h2) => {
                let mut moved = false;
                let open = &mut h2.open;
                h2.outbound.feed(bytes, |frame| {
                    if frame.ends_stream() || frame.kind == frames::RST_STREAM {
                        open.retain(|s| *s != frame.stream);
                    }
                    moved |= frame.carries_a_message();
                });
                let idle = h2.open.is_empty();
                self.slot.set_idle(idle);
                if moved {
                    self.progressed();
                }
            }
        }
    }

    /// With the stream pending: has the current head taken too long?
    fn head_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(
            self.protocol,
            Protocol::Http1 {
                head: Head::Reading { .. },
                ..
            }
        ) && self.head_deadline.as_mut().poll(cx).is_ready()
    }

    /// With the stream pending: has the connection been idle too long?
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle_deadline.as_mut().poll(cx).is_ready()
    }

    /// The start of an HTTP/1 answer the HTTP library wrote by itself, with our headers
    /// added; `None` for every other write.
    fn patch(&self, buf: &[u8]) -> Option<Vec<u8>> {
        let Protocol::Http1 {
            answering: false, ..
        } = self.protocol
        else {
            return None;
        };
        let at = bare_error_head(buf)?;
        let mut bytes = Vec::with_capacity(buf.len() + self.limits.error_headers.len());
        bytes.extend_from_slice(&buf[..at]);
        bytes.extend_from_slice(self.limits.error_headers.as_bytes());
        bytes.extend_from_slice(&buf[at..]);
        Some(bytes)
    }

    fn poll_write_stream(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    /// Writes out a patched answer; ready with the length of the caller's buffer once all
    /// of it is written. The caller hands the same buffer again after `Pending`.
    fn poll_patched(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            let Some(patched) = self.patched.take() else {
                return Poll::Ready(Ok(0));
            };
            if patched.written == patched.bytes.len() {
                return Poll::Ready(Ok(patched.consumed));
            }
            let rest = &patched.bytes[patched.written..];
            match self.poll_write_stream(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.patched = Some(Patched {
                        written: patched.written + n,
                        ..patched
                    });
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.patched = Some(patched);
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Where to insert headers into `buf` if it begins an error answer (4xx or 5xx) without
/// `Cache-Control`: every answer of ours has one, so such an answer comes from the HTTP
/// library itself.
fn bare_error_head(buf: &[u8]) -> Option<usize> {
    let status = buf.get(..10)?;
    if !status.starts_with(b"HTTP/1.") || !matches!(status[9], b'4' | b'5') {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf[..end].to_ascii_lowercase();
    let has_cache_control = head.windows(16).any(|w| w == b"\r\ncache-control:");
    (!has_cache_control).then_some(end + 2)
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.slot.reclaimed() && this.is_idle() {
            // End of file: the HTTP library closes the connection.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(Ok(())) => {
                this.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.head_overdue(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            ))),
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle connection closed",
            ))),
            Poll::Pending => {
                if this.is_idle() {
                    this.slot.wake_on_reclaim(cx.waker());
                    if this.slot.reclaimed() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Pending
            }
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
        if this.patched.is_none()
            && let Some(bytes) = this.patch(buf)
        {
            this.patched = Some(Patched {
                bytes,
                written: 0,
                consumed: buf.len(),
            });
        }
        if this.patched.is_some() {
            let polled = this.poll_patched(cx);
            if let Poll::Ready(Ok(n)) = polled {
                this.on_written(&buf[..n.min(buf.len())]);
            }
            return polled;
        }
        let polled = this.poll_write_stream(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.on_written(&buf[..n]);
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

#[cfg(test)]
mod tests {
    use super::bare_error_head;

    #[test]
    fn only_the_http_librarys_own_error_answers_are_patched() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let at = bare_error_head(bare).unwrap();
        assert_eq!(&bare[at..], b"\r\n");
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/html\r\ncache-control: no-store\r\n\r\n<p>";
        assert_eq!(bare_error_head(ours), None);
        assert_eq!(bare_error_head(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(
            bare_error_head(b"HTTP/1.1 400 Bad"),
            None,
            "an incomplete head"
        );
    }
}
