//! The HTTP edge: how the master's API meets the network. It owns the accept loop and every
//! connection (HTTP/1.1, plain or TLS), and holds against hostile clients:
//!
//! - a connection waits for a slot (`max_connections`) before it is accepted, so file
//!   descriptors cannot run out; the rest wait in the kernel's backlog; one client address
//!   holds at most `max_per_peer` of them, and its connections beyond are closed as they are
//!   accepted ([`crate::shares`], by [`peer_key`]), so that slow clients from one address cannot hold every slot;
//! - the TLS handshake and every request head must arrive within `header_timeout`, and an idle
//!   keep-alive connection is closed after it too (hyper's header read timeout runs from idle);
//! - a request body must keep arriving ([`body::BodyPace`]), else 408 and the connection closes;
//! - an answer must keep leaving: a client that reads nothing of it for the body timeout loses
//!   the connection ([`stall::Stalling`]);
//! - a declared `Content-Length` over `max_body` answers 413 before any body byte is read;
//! - a connection closes lingering ([`linger::Linger`]): what the client still sends is read and
//!   discarded for a moment, so a reset does not destroy the error answer it is about to read.
//!
//! Errors it answers are the API's JSON errors. The router stays ignorant of all this.

mod body;
mod linger;
mod stall;
pub mod tls;

pub use body::BodyPace;

use crate::api::ApiError;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long in-flight requests may finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The edge's limits; `serve` flags.
#[derive(Clone, Debug)]
pub struct Limits {
    /// TLS handshake, each request head, and an idle keep-alive connection.
    pub header_timeout: Duration,
    pub body: BodyPace,
    /// The largest request body; a larger declared length answers 413 at once.
    pub max_body: u64,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections served at once from one client address; more are closed when accepted.
    pub max_per_peer: usize,
}

/// Whose connections count together: an IPv4 address, or an IPv6 address's /64 (one
/// client's network: a host may use any address in it).
fn peer_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => {
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0).into()
            }
        },
        v4 => v4,
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then
/// lets in-flight requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let peers = crate::shares::Shares::default();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slot semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pass, do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(peer_slot) = peers.take(peer_key(peer.ip()), limits.max_per_peer) else {
            // Closed at once (it holds no slot): the address has its share open already.
            tracing::debug!(
                "connection from {peer} closed: {} connections from its address are open (serve --max-connections-per-ip)",
                limits.max_per_peer
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = linger::Linger::new(stall::Stalling::new(stream, limits.body.timeout));
        let (app, limits, tls, watcher) =
            (app.clone(), limits.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = (slot, peer_slot);
            match tls {
                None => connection(stream, app, limits, watcher).await,
                Some(tls) => {
                    match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, app, limits, watcher).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {SHUTDOWN_GRACE:?} were cut at shutdown");
    }
}

/// One HTTP/1.1 connection, until it closes or the server shuts down.
async fn connection<IO>(io: IO, app: Router, limits: Arc<Limits>, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = limits.header_timeout;
    let service = hyper::service::service_fn(move |req| {
        let (app, limits) = (app.clone(), limits.clone());
        async move { Ok::<_, Infallible>(request(req, app, &limits).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!("connection closed: {e}");
    }
}

/// One request: refused by its declared length, or passed on with a paced body.
async fn request(req: Request<Incoming>, app: Router, limits: &Limits) -> Response {
    if let Some(declared) = declared_length(&req) {
        if declared > limits.max_body {
            return closing(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than this server accepts: it declares {declared} bytes, the limit is {} (serve --max-body)",
                    limits.max_body
                ),
            ));
        }
    }
    let expired = Arc::new(AtomicBool::new(false));
    let paced = expired.clone();
    let req = req.map(|b| axum::body::Body::new(body::TimedBody::new(b, limits.body, paced)));
    let resp = match app.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if expired.load(Ordering::Relaxed) {
        return closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body stalled or arrived too slowly (it must keep coming: see --body-timeout {:?} and --body-min-rate {} bytes/s)",
                limits.body.timeout, limits.body.min_rate
            ),
        ));
    }
    resp
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error answer after which the connection closes (its body is left unread).
fn closing(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// File descriptors kept for everything but API connections (SQLite, agents, ssh links, blobs).
const FD_RESERVE: u64 = 256;

/// How many connections to serve at once, at most `wanted`: the open-file limit is raised to
/// its hard limit first, and [`FD_RESERVE`] descriptors stay for the rest of the master.
pub fn connection_budget(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let room = lim.rlim_cur.saturating_sub(FD_RESERVE).max(1);
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv6 clients count by /64, IPv4 (mapped or not) by address.
    #[test]
    fn peers_count_ipv4_by_address_and_ipv6_by_its_64() {
        let key = |s: &str| peer_key(s.parse().unwrap());
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff::9"),
            "same /64"
        );
        assert_ne!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:3::1"),
            "another /64"
        );
        assert_eq!(
            key("::ffff:10.0.0.1"),
            key("10.0.0.1"),
            "mapped is the IPv4 address"
        );
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    }
}
