//! The accept loop and connection handling shared by plain HTTP and HTTPS: a cap on open
//! connections (a connection over it is closed at once, the loop never waits), the TLS
//! handshake when configured, then HTTP/1.1 or HTTP/2 (hyper-util's `auto` builder) with a
//! header-read timeout, a body-read deadline, an idle timeout and bounded HTTP/2 streams and
//! header lists. Graceful shutdown: stop accepting, let open connections finish their requests.
//!
//! Early answers: a handler may answer before it has read the request body (404, 405, 401,
//! 413, 415). The rest of the body is then read and discarded (up to four times
//! `server.body_limit_bytes`, at least 1 MiB, and within the body deadline) before the answer
//! goes out, so that the client's upload ends normally: over HTTP/2 the stream closes cleanly
//! instead of being reset while the client is still sending (curl 7.88 then loses the answer:
//! "Stream error in the HTTP/2 framing layer", about half the time on loopback), and over
//! HTTP/1.1 the connection is not closed under a client still sending (a broken pipe for it).
//! A body larger than that is not read: the answer is sent, then the HTTP/2 stream is reset
//! with `NO_ERROR` (RFC 9113 section 8.1) and an HTTP/1.1 connection is closed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, Version, header};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::error::ApiError;
use super::error_code::ErrorCode;
use super::tls::{ClientIdentity, OverTls, TlsServer};
use crate::config::ServerSettings;

/// The limits every connection is served under (from `[server]`).
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most; already lowered below the open-file limit.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_header_list_bytes: u32,
    /// How much of a body is read in all, at most, to discard what the handler left unread.
    pub body_drain_limit: usize,
    /// How long a connection told to close may take to finish its requests.
    pub close_grace: Duration,
}

impl ConnectionLimits {
    /// The limits of `server`, with `max_connections` as the effective cap.
    pub fn new(server: &ServerSettings, max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            header_read_timeout: server.header_read_timeout_secs,
            body_read_timeout: server.body_read_timeout_secs,
            idle_timeout: server.idle_timeout_secs,
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
            http2_max_header_list_bytes: server.http2_max_header_list_bytes,
            // Four times the body limit, at least 1 MiB: enough for the oversized CSR of a
            // misconfigured station to end normally and learn its 413, little work otherwise.
            body_drain_limit: server.body_limit_bytes.saturating_mul(4).max(1 << 20),
            close_grace: server.request_timeout_secs,
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        // hyper's defences against rapid stream resets (CVE-2023-44487) stay at their defaults.
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_concurrent_streams)
            .max_header_list_size(self.http2_max_header_list_bytes);
        builder
    }
}

/// What every connection task shares.
struct Shared {
    app: axum::Router,
    tls: Option<TlsServer>,
    builder: auto::Builder<TokioExecutor>,
    limits: ConnectionLimits,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `signal` completes, then
/// stops accepting, tells every open connection to finish (idle ones close at once) and returns
/// when all are closed. The caller bounds that wait (`server.shutdown_grace_secs`).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsServer>,
    app: axum::Router,
    limits: ConnectionLimits,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let cap = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(cap));
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        app,
        tls,
        builder: limits.builder(),
        limits,
    });
    let mut refusals = Refusals::default();
    let mut signal = std::pin::pin!(signal);
    loop {
        let (tcp, peer) = tokio::select! {
            // The signal first: a stop is noticed even while connections keep arriving.
            biased;
            () = &mut signal => break,
            accepted = accept(&listener) => accepted,
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(
                    tcp,
                    peer,
                    permit,
                    shared.clone(),
                    stopping_rx.clone(),
                ));
            }
            Err(_) => {
                // Over the cap: closed at once, so the accept loop keeps draining the backlog.
                drop(tcp);
                refusals.count(cap);
            }
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    // Every connection task holds one permit until it ends.
    let _ = permits.acquire_many(cap as u32).await;
}

/// Connections closed over the cap: counted, and logged at most every ten seconds.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, cap: usize) {
        metrics::counter!("factory_ca_connections_refused_total").increment(1);
        self.since_log += 1;
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                refused = self.since_log,
                cap,
                "connection cap reached (server.max_connections): closing new connections \
                 at once"
            );
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// The next connection. Per-connection errors are skipped; others (such as EMFILE, which the
/// cap keeps away) are logged and retried shortly, without holding up the loop for long.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut last_log: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                if last_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::error!(error = %e, "accept error");
                    last_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One open connection: holds its place under the cap and counts itself for `/metrics`.
struct OpenConnection {
    _permit: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(permit: OwnedSemaphorePermit) -> OpenConnection {
        metrics::gauge!("factory_ca_connections_open").increment(1.0);
        OpenConnection { _permit: permit }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("factory_ca_connections_open").decrement(1.0);
    }
}

/// One TCP connection: the TLS handshake when configured, then HTTP until the client closes,
/// a limit closes it or shutdown drains it. Never fails the server.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    let _open = OpenConnection::new(permit);
    let _ = tcp.set_nodelay(true);
    match &shared.tls {
        None => serve_http(tcp, peer, None, false, shared.clone(), stopping).await,
        Some(tls) => {
            let accepted = tokio::select! {
                accepted = tls.accept(tcp, peer) => accepted,
                // Connections still in their handshake are dropped at shutdown.
                _ = stopping.wait_for(|stopping| *stopping) => return,
            };
            if let Some((stream, identity)) = accepted {
                serve_http(stream, peer, identity, true, shared.clone(), stopping).await;
            }
        }
    }
}

/// Whether a connection has a request in progress, and since when it has not.
struct Activity {
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new((0, Instant::now())),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        InFlight(self.clone())
    }

    /// How long the connection has had no request in progress (zero while it has one).
    fn idle_for(&self) -> Duration {
        let (in_flight, since) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if in_flight > 0 {
            Duration::ZERO
        } else {
            since.elapsed()
        }
    }
}

/// One request in progress; its end restarts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 -= 1;
        if state.0 == 0 {
            state.1 = Instant::now();
        }
    }
}

/// A streamed response body that keeps its request in progress (see [`Activity`]) until it
/// ends or the connection drops it.
struct StreamedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for StreamedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// HTTP/1.1 or HTTP/2 on an established stream, under the idle timeout and shutdown.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    identity: Option<ClientIdentity>,
    over_tls: bool,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = activity.begin();
            let shared = shared.clone();
            let identity = identity.clone();
            async move {
                let response = handle(request, peer, identity, over_tls, &shared).await;
                // A streamed answer (the CSV export) is in progress until its last byte is
                // sent: the connection is not idle meanwhile. A buffered one is done here.
                if hyper::body::Body::size_hint(response.body())
                    .exact()
                    .is_some()
                {
                    drop(in_flight);
                    return Ok::<_, Infallible>(response);
                }
                Ok(response.map(|body| {
                    Body::new(StreamedBody {
                        body,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let limits = &shared.limits;
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let check_every =
        (limits.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(check_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set once the connection was told to finish: by shutdown, or for being idle.
    let mut closing: Option<(Instant, Duration)> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|stopping| *stopping), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                // The caller bounds the whole shutdown (server.shutdown_grace_secs).
                closing = Some((Instant::now(), Duration::MAX));
            }
            _ = ticks.tick() => match closing {
                Some((since, grace)) if since.elapsed() >= grace => {
                    tracing::debug!(%peer, "connection did not finish after being told to close");
                    return;
                }
                Some(_) => {}
                None if activity.idle_for() >= limits.idle_timeout => {
                    tracing::trace!(%peer, "closing an idle connection (server.idle_timeout_secs)");
                    conn.as_mut().graceful_shutdown();
                    closing = Some((Instant::now(), limits.close_grace));
                }
                None => {}
            },
        }
    }
}

/// One request through the router: the peer address and client identity of its connection
/// attached, its body under the body deadline, and what the handler left of the body read
/// before the answer.
async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    identity: Option<ClientIdentity>,
    over_tls: bool,
    shared: &Shared,
) -> Response<Body> {
    let deadline = Instant::now() + shared.limits.body_read_timeout;
    let version = request.version();
    let (parts, incoming) = request.into_parts();
    let body = SharedBody::new(incoming);
    let mut request = Request::from_parts(parts, Body::new(body.clone()));
    // The peer address, as axum's `ConnectInfo` extractor reads it (per-source limits).
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity);
    }
    if over_tls {
        request.extensions_mut().insert(OverTls);
    }
    let answer = shared.app.clone().oneshot(request);
    let mut response = tokio::select! {
        response = answer => match response {
            Ok(response) => response,
            Err(never) => match never {},
        },
        () = body.overdue(deadline) => {
            let mut response = ApiError::new(
                ErrorCode::RequestBodyTimeout,
                format!(
                    "the request body did not arrive within {} s \
                     (server.body_read_timeout_secs); send the request again",
                    shared.limits.body_read_timeout.as_secs()
                ),
            )
            .into_response();
            close_after(&mut response, version);
            return response;
        }
    };
    if !body.drain(shared.limits.body_drain_limit, deadline).await {
        close_after(&mut response, version);
    }
    response
}

/// Asks an HTTP/1 client to open a new connection for its next request (HTTP/2 has no such
/// header: its stream ends on its own).
fn close_after(response: &mut Response<Body>, version: Version) {
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// The request body as the router sees it, read through a slot the connection keeps too, so
/// that what the handler leaves unread can be drained after it answers.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<BodySlot>>);

struct BodySlot {
    body: Incoming,
    /// The body ended, or failed (then nothing more is read from it).
    done: bool,
    /// The handler's last read found no bytes: it is waiting for the client.
    waiting: bool,
    read: usize,
}

impl SharedBody {
    fn new(body: Incoming) -> SharedBody {
        SharedBody(Arc::new(Mutex::new(BodySlot {
            body,
            done: false,
            waiting: false,
            read: 0,
        })))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, BodySlot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self) -> bool {
        let slot = self.slot();
        slot.done || hyper::body::Body::is_end_stream(&slot.body)
    }

    /// Completes once the deadline has passed while the handler waits for body bytes that
    /// have not come; never when the body has ended. A handler that does not read the body
    /// (a long admin call with an ignored body) is not cut short.
    async fn overdue(&self, deadline: Instant) {
        tokio::time::sleep_until(deadline).await;
        loop {
            if self.finished() {
                std::future::pending::<()>().await;
            }
            if self.slot().waiting {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads and discards the rest of the body, up to `limit` bytes in all and until
    /// `deadline`. True when the body has ended.
    async fn drain(&self, limit: usize, deadline: Instant) -> bool {
        if self.finished() {
            return true;
        }
        let announced = hyper::body::Body::size_hint(&self.slot().body).lower();
        if announced > limit as u64 {
            return false;
        }
        let mut body = self.clone();
        let drained = tokio::time::timeout_at(deadline, async {
            while body.slot().read <= limit {
                match body.frame().await {
                    None => return true,
                    Some(Ok(_)) => {}
                    Some(Err(_)) => return false,
                }
            }
            false
        });
        drained.await.unwrap_or(false)
    }
}

impl hyper::body::Body for SharedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut slot = self.slot();
        if slot.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut slot.body).poll_frame(cx);
        slot.waiting = polled.is_pending();
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => slot.done = true,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    slot.read = slot.read.saturating_add(data.len());
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished()
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.slot();
        if slot.done {
            SizeHint::with_exact(0)
        } else {
            slot.body.size_hint()
        }
    }
}
