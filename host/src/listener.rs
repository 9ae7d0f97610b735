//! The HTTP listener: an accept loop with a cap on open connections, and
//! hyper's HTTP/1.1 on each connection under the listener's timeouts.
//!
//! A client that cannot be trusted to be quick must not hold a connection
//! for ever. Each connection is a [`Conn`], a `TcpStream` that knows which
//! phase its HTTP exchange is in and applies that phase's deadline:
//!
//! | phase | deadline | setting |
//! |-------|----------|---------|
//! | from the connection's start, or from the first byte of a later request, to its complete header | absolute | `header-read-timeout-ms` |
//! | a keep-alive connection waiting for the next request's first byte | absolute | `idle-timeout-ms` |
//! | the request body | absolute, in the handler that reads it | `body-read-timeout-ms` |
//! | any write of an answer (or of a WebSocket frame) | no progress for | `write-timeout-ms` |
//!
//! A connection over `max-connections` is answered 503 (3003) and closed at
//! once. After a WebSocket upgrade the read deadlines end (node sessions
//! have their own pings); the connection still counts towards
//! `max-connections` and writes keep their timeout.
//!
//! hyper's own `header_read_timeout` is not used: in hyper 1.x it starts
//! when hyper starts waiting for a request head, which on a keep-alive
//! connection is right after the previous answer, so it would also close
//! idle connections at the header timeout (`tests/listener.rs` shows that
//! the idle time of a keep-alive connection does not count against it).
//!
//! hyper answers some malformed requests itself (400, 414 URI too long, 431
//! header too large) with an empty body. Those answers are written while no
//! request is being served, so [`Conn`] recognises them and writes an
//! `Event3rdServerFault` body in their place.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Result;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::Host;
use crate::admin::metrics::{HttpMetrics, Limit};
use crate::config::ServerConfig;
use crate::esp::{FaultBody, Refused};
use crate::fault::{Fault, FaultCode};

/// Most header fields in a request head (hyper's default, set explicitly
/// because the 431 answer names it).
pub const MAX_HEADERS: usize = 100;
/// Largest request head in bytes (hyper's default buffer limit).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// Longest request URI the `http` crate reads.
pub const MAX_URI_BYTES: usize = 65_534;

/// The listener's bounds, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read: Duration,
    pub idle: Duration,
    pub write: Duration,
}

impl Limits {
    pub fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            max_connections: server.max_connections,
            header_read: server.header_read_timeout(),
            idle: server.idle_timeout(),
            write: server.write_timeout(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then closes
/// the node sessions, stops accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    host: Arc<Host>,
    shutdown: CancellationToken,
) -> Result<()> {
    let limits = Limits::from_config(&host.server);
    let app = crate::app(host.clone());
    let metrics = host.metrics.http.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    // Each connection task holds a receiver; `closed()` resolves once
    // every task has ended.
    let (done, done_rx) = tokio::sync::watch::channel(());
    let stop = CancellationToken::new();
    let accept_log = crate::runtime::log::LogLimit::unmetered(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !is_per_connection(&err) {
                        if let Some(unlogged) = accept_log.admit() {
                            tracing::warn!(
                                "http: cannot accept connections: {err} ({unlogged} more since the last line); \
                                 if the process is out of files, raise its open-files limit \
                                 (ulimit -n) or lower server.max-connections"
                            );
                        }
                        // Do not spin while the condition lasts.
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                            () = shutdown.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream, peer, &limits, &metrics);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn::new(stream, peer, permit, limits, metrics.clone());
        let state = conn.state.clone();
        let router = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            state.begin();
            let state = state.clone();
            let answer = router.clone().call(request);
            async move {
                let response = match answer.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    state.upgraded();
                }
                Ok::<_, Infallible>(response.map(|body| Answer { body, state }))
            }
        });
        let connection = http
            .serve_connection(TokioIo::new(conn), service)
            .with_upgrades();
        let stop = stop.clone();
        let done_rx = done_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%peer, "http: connection ended: {err}");
            }
            drop(done_rx);
        });
    }
    drop(listener);
    // An orderly stop. No new work: capture points stop taking items, and
    // HTTP connections close after the request they are in.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
    host.stopping.cancel();
    stop.cancel();
    // The work in flight finishes while node sessions are still there to
    // answer its operations.
    if !host.drain_captures(SHUTDOWN_DRAIN).await {
        tracing::warn!(
            "shutdown: capture points still had items in flight after {SHUTDOWN_DRAIN:?}; \
             those not finished stay in their source and are taken again at the next start"
        );
    }
    drop(done_rx);
    if tokio::time::timeout_at(deadline, done.closed())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: HTTP requests still in flight after {SHUTDOWN_DRAIN:?}");
    }
    // WebSocket sessions outlive graceful HTTP shutdown: close them, with
    // the reason, so nodes fail over to another host.
    host.nodes.close_all();
    host.nodes.wait_closed(Duration::from_secs(2)).await;
    Ok(())
}

/// How long an orderly stop waits for the work in flight (capture items,
/// HTTP requests) before it closes node sessions anyway.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Accept errors that concern one connection only (it went away before it
/// was accepted); others (out of files, out of memory) concern them all.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Refuses a connection over `max-connections`: a 503 fault if the socket
/// takes it at once, then closed. Nothing waits on the client.
fn refuse(stream: TcpStream, peer: SocketAddr, limits: &Limits, metrics: &HttpMetrics) {
    metrics.hit(
        Limit::MaxConnections,
        format_args!(
            "refused a connection from {peer}: server.max-connections ({}) are open",
            limits.max_connections
        ),
    );
    // Read what already arrived so that closing sends FIN, not a reset
    // that could destroy the answer before the client reads it.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let fault = Fault::new(
        FaultCode::Overloaded,
        format!(
            "the server has {} connections open, its server.max-connections; try again later",
            limits.max_connections
        ),
    );
    let status = crate::esp::http::status_of(&fault);
    let _ = stream.try_write(&fault_answer(status, &fault, &[("retry-after", "1")]));
}

/// A complete HTTP/1.1 answer carrying `fault`, closing the connection.
fn fault_answer(status: StatusCode, fault: &Fault, headers: &[(&str, &str)]) -> Vec<u8> {
    let refused = Refused::new(fault.clone());
    let body = serde_json::to_vec(&FaultBody::new(&refused)).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Where a connection's HTTP exchange is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request head that started (or, for the first request,
    /// whose connection started) at `since`.
    Head { since: Instant },
    /// Between requests, since `since`: no byte of the next one yet.
    Idle { since: Instant },
    /// A request is being served: its body read, its answer produced.
    Busy,
    /// The answer is produced; its last bytes are being written. `next`:
    /// when the first byte of the next request arrived, if it did.
    Finishing { next: Option<Instant> },
    /// A WebSocket: no read deadlines.
    Upgraded,
}

/// The phase, shared by a connection's IO and the requests served on it.
#[derive(Debug)]
struct ConnState {
    phase: Mutex<Phase>,
}

impl ConnState {
    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *phase = change(*phase);
    }

    fn get(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// hyper read a request head and calls the service.
    fn begin(&self) {
        self.set(|phase| match phase {
            Phase::Upgraded => Phase::Upgraded,
            _ => Phase::Busy,
        });
    }

    /// The answer switches protocols.
    fn upgraded(&self) {
        self.set(|_| Phase::Upgraded);
    }

    /// hyper is done with the answer's body.
    fn answered(&self) {
        self.set(|phase| match phase {
            Phase::Busy => Phase::Finishing { next: None },
            other => other,
        });
    }

    /// Everything written so far reached the socket.
    fn flushed(&self) {
        self.set(|phase| match phase {
            Phase::Finishing { next: Some(since) } => Phase::Head { since },
            Phase::Finishing { next: None } => Phase::Idle {
                since: Instant::now(),
            },
            other => other,
        });
    }

    /// Bytes arrived.
    fn read_some(&self) {
        self.set(|phase| match phase {
            Phase::Idle { .. } => Phase::Head {
                since: Instant::now(),
            },
            Phase::Finishing { next: None } => Phase::Finishing {
                next: Some(Instant::now()),
            },
            other => other,
        });
    }
}

/// The body of an answer; tells the connection when hyper is done with it.
struct Answer {
    body: Body,
    state: Arc<ConnState>,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.state.answered();
    }
}

/// One accepted connection: the socket under the listener's deadlines. It
/// holds its place among `max-connections` until dropped (for a WebSocket,
/// when the session ends).
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ConnState>,
    limits: Limits,
    metrics: Arc<HttpMetrics>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Set while a write is stuck: when it fails.
    write_deadline: Option<Instant>,
    /// A fault answer written in place of one hyper wrote itself.
    replacement: Option<Replacement>,
    _permit: OwnedSemaphorePermit,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
}

impl Conn {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        limits: Limits,
        metrics: Arc<HttpMetrics>,
    ) -> Conn {
        metrics.open.inc();
        Conn {
            stream,
            peer,
            state: Arc::new(ConnState {
                phase: Mutex::new(Phase::Head {
                    since: Instant::now(),
                }),
            }),
            limits,
            metrics,
            read_timer: None,
            write_timer: None,
            write_deadline: None,
            replacement: None,
            _permit: permit,
        }
    }

    /// The read deadline of the current phase, and the limit it enforces.
    fn read_deadline(&self) -> Option<(Instant, Limit)> {
        match self.state.get() {
            Phase::Head { since } => {
                Some((since + self.limits.header_read, Limit::HeaderReadTimeout))
            }
            Phase::Idle { since } => Some((since + self.limits.idle, Limit::IdleTimeout)),
            Phase::Busy | Phase::Finishing { .. } | Phase::Upgraded => None,
        }
    }

    /// After a write-side call: progress clears the write deadline; no
    /// progress starts it, and past it the write fails.
    fn check_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.write_deadline = None;
            return poll;
        }
        let deadline = *self
            .write_deadline
            .get_or_insert_with(|| Instant::now() + self.limits.write);
        if expired(&mut self.write_timer, deadline, cx) {
            self.metrics.hit(
                Limit::WriteTimeout,
                format_args!(
                    "closed a connection from {}: it accepted no byte of an answer for server.write-timeout-ms ({})",
                    self.peer,
                    self.limits.write.as_millis()
                ),
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client accepted no byte of the answer within server.write-timeout-ms",
            )));
        }
        Poll::Pending
    }

    /// A write while a request head is being read can only be hyper
    /// answering a request it could not read: it is replaced by the same
    /// status with a fault body. `Some(len)` when `head` was taken.
    fn replace_error_answer(&mut self, head: &[u8]) -> Option<usize> {
        if self.replacement.is_some() {
            return Some(head.len()); // the rest of hyper's answer
        }
        if !matches!(self.state.get(), Phase::Head { .. }) {
            return None;
        }
        let status = head
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| StatusCode::from_bytes(code).ok())?;
        let (limit, message) = match status {
            StatusCode::URI_TOO_LONG => (
                Limit::UriTooLong,
                format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
            ),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
                Limit::HeaderTooLarge,
                format!(
                    "the request header is too large: at most {MAX_HEADERS} fields and {MAX_HEAD_BYTES} bytes"
                ),
            ),
            _ => (
                Limit::BadRequest,
                "the request is not valid HTTP/1.1".to_string(),
            ),
        };
        // hyper closes the connection after this answer.
        self.metrics.hit(
            limit,
            format_args!("closed a connection from {}: {message}", self.peer),
        );
        let fault = Fault::invalid(message);
        self.replacement = Some(Replacement {
            bytes: fault_answer(status, &fault, &[]),
            written: 0,
        });
        Some(head.len())
    }

    /// Writes what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(replacement) = &self.replacement else {
                return Poll::Ready(Ok(()));
            };
            let rest = &replacement.bytes[replacement.written..];
            if rest.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let poll = Pin::new(&mut self.stream).poll_write(cx, rest);
            match self.check_write(cx, poll) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    if let Some(replacement) = &mut self.replacement {
                        replacement.written += n;
                    }
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Whether `deadline` has passed; if not, `timer` wakes the task then.
///
/// The timer is only moved earlier, never later: deadlines move forward
/// with every request, and moving a timer costs a trip to the timer wheel,
/// so a timer that fires before the current deadline is re-armed then
/// (once per timeout period, not once per request).
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    let timer = match timer {
        Some(timer) => {
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if timer.deadline() >= deadline {
            return true;
        }
        // It fired for an earlier deadline: wait for this one.
        timer.as_mut().reset(deadline);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.read_some();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some((deadline, limit)) = this.read_deadline() else {
                    return Poll::Pending;
                };
                if !expired(&mut this.read_timer, deadline, cx) {
                    return Poll::Pending;
                }
                let (setting, what) = if limit == Limit::IdleTimeout {
                    (this.limits.idle, "sent no new request")
                } else {
                    (this.limits.header_read, "sent no complete request header")
                };
                this.metrics.hit(
                    limit,
                    format_args!(
                        "closed a connection from {}: it {what} within server.{}-ms ({})",
                        this.peer,
                        limit.as_str(),
                        setting.as_millis()
                    ),
                );
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(taken) = this.replace_error_answer(buf) {
            return match this.poll_replacement(cx) {
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                _ => Poll::Ready(Ok(taken)),
            };
        }
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.check_write(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && this.replace_error_answer(first).is_some()
        {
            let taken = bufs.iter().map(|b| b.len()).sum();
            return match this.poll_replacement(cx) {
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                _ => Poll::Ready(Ok(taken)),
            };
        }
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.check_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        let poll = this.check_write(cx, poll);
        if let Poll::Ready(Ok(())) = poll {
            this.state.flushed();
            // hyper may not read again before a byte arrives: the timer
            // wakes it at the new phase's deadline.
            if let Some((deadline, _)) = this.read_deadline() {
                let _ = expired(&mut this.read_timer, deadline, cx);
            }
        }
        poll
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.check_write(cx, poll)
    }
}
