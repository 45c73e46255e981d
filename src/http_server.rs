//! The HTTP server: our own accept loop on hyper's HTTP/1.1 connections, for what
//! `axum::serve` does not offer: timeouts on slow clients and a cap on connections per client
//! address (docs/design.md, "Slow and greedy clients").
//!
//! - **Header timeout**: a connection must deliver a request's headers within it, counted from
//!   its start (a fresh connection is there to send a request) or from the first byte of a later
//!   request.
//! - **Body timeout**: a request's body must arrive within it, counted from the end of its
//!   headers. A handler reading a body past it sees an error, and the answer is a 408 with
//!   `Connection: close`, whatever the handler made of the cut-short body.
//! - **Idle timeout**: a kept-alive connection with no request under way is closed after it.
//!   A request is under way until its response has been sent in full, so a long-lived response
//!   (an event stream, an MCP stream, a slow tool call) is never cut.
//! - **Connections per address**: an accepted connection over the cap for its client address
//!   is closed at once, before anything is read from it.
//!
//! Each connection's handler sees its peer address as `ConnectInfo<SocketAddr>`, as with
//! axum's `into_make_service_with_connect_info`. Shutdown is graceful as with `axum::serve`:
//! no new connections; each open one ends once its request under way is answered.

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};

/// Connections closed by the server's own limits, by reason (`per_address`, `header`, `idle`).
pub const CONNECTIONS_CLOSED: &str = "mcplatform_http_connections_closed_total";
/// Requests whose body did not arrive within the body timeout.
pub const BODY_TIMEOUTS: &str = "mcplatform_http_body_timeouts_total";

/// What a connection may cost the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub connections_per_address: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their requests under way.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // Listed from the start, at zero.
    for reason in ["per_address", "header", "idle"] {
        metrics::counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(0);
    }
    metrics::counter!(BODY_TIMEOUTS).increment(0);
    let counts: Counts = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver: once all are gone, every connection has ended.
    let (open_tx, open_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait a little for some to be freed,
                // without a busy loop, and without stopping long.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&counts, peer.ip(), limits.connections_per_address) else {
            tracing::debug!(%peer, "connection over the per-address cap closed");
            metrics::counter!(CONNECTIONS_CLOSED, "reason" => "per_address").increment(1);
            drop(tcp);
            continue;
        };
        // Responses (SSE frames above all) go out at once instead of waiting on Nagle's
        // algorithm and the peer's delayed ACK, which would add ~40 ms to every MCP call.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        tokio::spawn(connection(
            tcp,
            peer,
            app.clone(),
            limits,
            stop_rx.clone(),
            (slot, open_rx.clone()),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection, served until it ends, a limit closes it, or shutdown ends it gracefully.
/// `_held` is dropped (the address's slot freed, the connection counted as ended) on return.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _held: (Slot, watch::Receiver<()>),
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: activity.clone(),
    });
    let service = ConnectionService {
        app,
        peer,
        activity: activity.clone(),
        body_timeout: limits.body_timeout,
    };
    let conn = http1::Builder::new()
        // Our own header timeout (see `Activity`): hyper's would also cut idle keep-alive.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            reason = activity.expired(&limits) => {
                tracing::debug!(%peer, reason, "connection timed out");
                metrics::counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
                // Dropping the connection closes the socket.
                return;
            }
        }
    }
}

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One open connection counted against its client address, until dropped.
struct Slot {
    counts: Counts,
    ip: IpAddr,
}

impl Slot {
    fn take(counts: &Counts, ip: IpAddr, cap: usize) -> Option<Self> {
        // `::ffff:127.0.0.2` on a dual-stack listener is the IPv4 client 127.0.0.2.
        let ip = ip.to_canonical();
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What a connection is doing, for its header and idle timeouts.
struct Activity {
    state: Mutex<ActivityState>,
    /// Set while no request is under way and no byte of the next one has come: the next byte
    /// read starts the header timeout.
    awaiting_first_byte: AtomicBool,
    changed: Notify,
}

struct ActivityState {
    /// Requests whose response has not been sent in full.
    in_flight: usize,
    /// When the connection fell idle (its last response sent).
    idle_since: Instant,
    /// When the headers of the next request began (the connection's start for its first).
    head_since: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: Some(Instant::now()),
            }),
            awaiting_first_byte: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes came in.
    fn read(&self) {
        if self.awaiting_first_byte.swap(false, Ordering::AcqRel) {
            let mut state = self.lock();
            if state.in_flight == 0 && state.head_since.is_none() {
                state.head_since = Some(Instant::now());
            }
            drop(state);
            self.changed.notify_one();
        }
    }

    /// A request's headers were read: it is under way until the returned guard is dropped
    /// (with its response body, once sent in full).
    fn begin(self: &Arc<Self>) -> InFlight {
        self.awaiting_first_byte.store(false, Ordering::Release);
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_since = None;
        drop(state);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// The deadline the connection is under now, and its reason; none while a request is
    /// under way.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let state = self.lock();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_since {
            Some(since) => (since + limits.header_timeout, "header"),
            None => (state.idle_since + limits.idle_timeout, "idle"),
        })
    }

    /// Completes when a timeout has passed, with its reason.
    async fn expired(&self, limits: &Limits) -> &'static str {
        loop {
            match self.deadline(limits) {
                None => self.changed.notified().await,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            // Unless a request began or bytes came meanwhile.
                            if let Some((at, reason)) = self.deadline(limits) {
                                if at <= Instant::now() {
                                    return reason;
                                }
                            }
                        }
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request under way; its drop makes the connection idle if it was the last.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.head_since = None;
            self.0.awaiting_first_byte.store(true, Ordering::Release);
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

/// The socket, telling [`Activity`] when bytes come in.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The app, as hyper calls it for one connection's requests.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = hyper::Response<SentBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.body_timeout;
        let mut request = request.map(|body| TimedBody {
            inner: body,
            deadline,
            sleep: None,
            timed_out: timed_out.clone(),
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let mut app = self.app.clone();
        Box::pin(async move {
            let response = match tower_service::Service::call(&mut app, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if timed_out.load(Ordering::Acquire) {
                metrics::counter!(BODY_TIMEOUTS).increment(1);
                request_timeout(&response)
            } else {
                response
            };
            Ok(response.map(|body| SentBody {
                inner: body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The 408 that replaces whatever a handler answered to a body cut short by the body timeout,
/// keeping the request id; the connection is closed after it.
fn request_timeout(answered: &axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;
    let mut response = api::error::ApiError::request_timeout().into_response();
    if let Some(id) = answered.headers().get("x-request-id") {
        response.headers_mut().insert("x-request-id", id.clone());
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once the body timeout has passed.
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Made the first time the body is waited for: a request without a body needs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive within the body timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body, holding its request under way until sent in full (or dropped).
struct SentBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl Body for SentBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_per_connection_up_to_the_cap_per_address() {
        let counts: Counts = Arc::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let first = Slot::take(&counts, a, 2).unwrap();
        let second = Slot::take(&counts, mapped, 2).unwrap();
        assert!(Slot::take(&counts, a, 2).is_none());
        let other = Slot::take(&counts, b, 2);
        assert!(other.is_some());
        drop(first);
        let third = Slot::take(&counts, a, 2);
        assert!(third.is_some());
        drop((second, third, other));
        assert!(counts.lock().unwrap().is_empty());
    }
}
