//! The HTTP edge against hostile clients (issue 12 item 4), over raw TCP sockets: slow headers
//! (slowloris), slow and stalled bodies, a declared 100 GiB body, idle keep-alive connections,
//! the connection cap, and shutdown with such connections open. The master keeps answering
//! `/health` throughout.

mod common;

use common::Master;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn addr(m: &Master) -> SocketAddr {
    m.url
        .strip_prefix("http://")
        .expect("a plain HTTP master")
        .parse()
        .unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the master");
    s.set_nodelay(true).unwrap();
    s
}

/// What the server did on a connection since the last look.
#[derive(Debug, PartialEq)]
enum Seen {
    Open,
    /// EOF or reset: the server closed it.
    Closed,
}

/// Reads whatever is there without waiting; answers are appended to `got`.
fn look(s: &mut TcpStream, got: &mut Vec<u8>) -> Seen {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let seen = loop {
        match s.read(&mut buf) {
            Ok(0) => break Seen::Closed,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break Seen::Open,
            Err(_) => break Seen::Closed,
        }
    };
    s.set_nonblocking(false).unwrap();
    seen
}

/// Reads until the server closes the connection or `within` passes; (bytes, closed, when).
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (got, false, start.elapsed());
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (got, true, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false, start.elapsed())
            }
            Err(_) => return (got, true, start.elapsed()),
        }
    }
}

/// Splits a raw HTTP/1.1 answer into (status, JSON body).
fn parse(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, body)
}

/// GET /api/v1/health on a fresh connection; how long it took.
fn health(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = connect(addr);
    s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (raw, closed, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(closed, "/health did not answer in 5 s");
    assert_eq!(parse(&raw).0, 200, "{}", String::from_utf8_lossy(&raw));
    start.elapsed()
}

/// A request head for a JSON POST of `len` bytes to `path` with the master's token.
fn post_head(m: &Master, path: &str, len: u64) -> String {
    format!(
        "POST /api/v1{path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        m.token
    )
}

#[test]
fn slowloris_connections_are_closed_within_the_header_timeout_while_health_answers() {
    let m = Master::start_with(None, &["--header-timeout", "2s"]);
    let addr = addr(&m);
    let partial = b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
    let start = Instant::now();
    let mut conns: Vec<(TcpStream, Option<Duration>)> =
        (0..25).map(|_| (connect(addr), None)).collect();
    // One byte a second on each, as long as the server keeps them (bounded: 8 s).
    for byte in partial.iter().take(8) {
        for (s, closed) in conns.iter_mut().filter(|(_, c)| c.is_none()) {
            let wrote = s.write_all(&[*byte]).is_ok();
            if !wrote || look(s, &mut Vec::new()) == Seen::Closed {
                *closed = Some(start.elapsed());
            }
        }
        if conns.iter().all(|(_, c)| c.is_some()) {
            break;
        }
        let took = health(addr);
        assert!(
            took < Duration::from_secs(1),
            "/health took {took:?} under slowloris"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let open = conns.iter().filter(|(_, c)| c.is_none()).count();
    assert_eq!(open, 0, "{open} of 25 slow-header connections still open");
    let last = conns.iter().filter_map(|(_, c)| *c).max().unwrap();
    assert!(
        last <= Duration::from_millis(4500),
        "the last slow-header connection was closed after {last:?} (header timeout 2 s)"
    );
    health(addr);
}

#[test]
fn trickling_and_stalled_bodies_get_408_and_their_connections_closed() {
    let m = Master::start_with(None, &["--body-timeout", "2s"]);
    let addr = addr(&m);
    let head = post_head(&m, "/folds", 1000);
    // A body of one byte every 300 ms: never idle for 2 s, but far behind the minimum rate.
    let trickle = {
        let head = head.clone();
        std::thread::spawn(move || {
            let mut s = connect(addr);
            s.write_all(head.as_bytes()).unwrap();
            let start = Instant::now();
            let mut got = Vec::new();
            while start.elapsed() < Duration::from_secs(8) {
                if s.write_all(b" ").is_err() || look(&mut s, &mut got) == Seen::Closed {
                    return (got, Some(start.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            (got, None)
        })
    };
    // A body that stops after 10 bytes.
    let mut stalled = connect(addr);
    stalled
        .write_all(format!("{head}{{\"command\"").as_bytes())
        .unwrap();
    let (raw, closed, took) = read_until_closed(&mut stalled, Duration::from_secs(8));
    assert!(closed, "a stalled body kept its connection open 8 s");
    assert!(took < Duration::from_millis(3500), "closed after {took:?}");
    let (status, body) = parse(&raw);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");

    let (raw, closed) = trickle.join().unwrap();
    let took = closed.expect("a trickling body kept its connection open 8 s");
    assert!(took < Duration::from_millis(3500), "closed after {took:?}");
    let (status, body) = parse(&raw);
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--body-timeout"),
        "{body}"
    );
    // Nothing was submitted, and the master still answers.
    assert_eq!(m.get("/folds")["folds"], serde_json::json!([]));
    health(addr);
}

#[test]
fn a_declared_100_gib_body_gets_413_json_before_any_body_byte() {
    let m = Master::start(None);
    let addr = addr(&m);
    for (path, auth) in [
        (
            "/api/v1/blobs",
            format!("Authorization: Bearer {}\r\n", m.token),
        ),
        ("/api/v1/folds", String::new()),
        ("/runapp/rawdata/", String::new()),
    ] {
        let mut s = connect(addr);
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/octet-stream\r\nContent-Length: 107374182400\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let (raw, closed, took) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(
            !raw.is_empty(),
            "POST {path}: no answer in 5 s to a declared 100 GiB body"
        );
        let (status, body) = parse(&raw);
        assert_eq!(status, 413, "POST {path}: {body}");
        assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("107374182400"),
            "{body}"
        );
        assert!(closed, "POST {path}: the connection stayed open after 413");
        assert!(
            took < Duration::from_secs(2),
            "POST {path}: 413 after {took:?}"
        );
    }
    health(addr);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let m = Master::start_with(None, &["--header-timeout", "2s"]);
    let mut s = connect(addr(&m));
    s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (raw, closed, took) = read_until_closed(&mut s, Duration::from_secs(6));
    assert!(closed, "an idle keep-alive connection stayed open 6 s");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3500),
        "closed after {took:?} (header timeout 2 s)"
    );
    assert_eq!(parse(&raw).0, 200);
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let m = Master::start_with(None, &["--max-connections", "4", "--header-timeout", "3s"]);
    let addr = addr(&m);
    let idle: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // The fifth is queued by the kernel, not served, until one of the four is closed.
    let mut fifth = connect(addr);
    let start = Instant::now();
    fifth
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut early = Vec::new();
    assert_eq!(look(&mut fifth, &mut early), Seen::Open);
    assert!(
        early.is_empty(),
        "served beyond the cap: {:?}",
        String::from_utf8_lossy(&early)
    );
    let (raw, closed, _) = read_until_closed(&mut fifth, Duration::from_secs(6));
    assert!(closed, "the fifth connection was never served");
    assert_eq!(parse(&raw).0, 200);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "served after {waited:?}, before a slot was freed"
    );
    drop(idle);
}

#[test]
fn a_client_that_stops_reading_its_answer_loses_the_connection() {
    let m = Master::start_with(None, &["--body-timeout", "2s"]);
    let size: usize = 32 << 20;
    let id = m.submit(vec![common::sh(&format!(
        "head -c {size} /dev/zero > $DATARUN_OUTPUT/big"
    ))])[0];
    let fold = &m.wait_all(&[id], Duration::from_secs(60))[0];
    assert_eq!(fold["state"], "done", "{fold}");
    let mut s = connect(addr(&m));
    s.write_all(
        format!(
            "GET /api/v1/folds/{id}/outputs/big HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\r\n",
            m.token
        )
        .as_bytes(),
    )
    .unwrap();
    // Read nothing past the body timeout, then everything there is.
    std::thread::sleep(Duration::from_secs(4));
    let (got, closed, _) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(
        closed,
        "the master kept the connection of a client that stopped reading ({} bytes read: {:?})",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(300)])
    );
    assert!(
        got.len() < size,
        "the whole answer ({} bytes) was sent to a client that stopped reading",
        got.len()
    );
    assert!(String::from_utf8_lossy(&got[..12]).starts_with("HTTP/1.1 200"));
    health(addr(&m));
}

#[test]
fn sigterm_stops_the_master_promptly_with_slow_connections_open() {
    let mut m = Master::start_with(None, &["--header-timeout", "2s"]);
    let addr = addr(&m);
    let mut kept = connect(addr);
    kept.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut slow = connect(addr);
    slow.write_all(b"GET /api/v1/hea").unwrap();
    let mut child = m.child.take().unwrap();
    let start = Instant::now();
    // SAFETY: signalling the master we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the master did not stop within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status}");
    let (_, closed, _) = read_until_closed(&mut slow, Duration::from_secs(1));
    assert!(closed);
}

/// One address holds at most `--max-connections-per-ip` connections: beyond them a new one
/// is closed at once (it takes no slot, however many the server has), and once one of the
/// address's connections closes a new one is served.
#[test]
fn one_address_holds_at_most_its_share_of_connections() {
    let m = Master::start_with(
        None,
        &[
            "--max-connections",
            "16",
            "--max-connections-per-ip",
            "3",
            "--header-timeout",
            "3s",
        ],
    );
    let addr = addr(&m);
    // The harness's own keep-alive connection from this address closes idle after 3 s.
    std::thread::sleep(Duration::from_millis(3500));
    let mut idle: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut fourth = connect(addr);
    let _ =
        fourth.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let (raw, closed, took) = read_until_closed(&mut fourth, Duration::from_secs(3));
    assert!(
        closed && raw.is_empty(),
        "the fourth was served: {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        took < Duration::from_secs(2),
        "closed after {took:?}, not at once"
    );
    for s in &mut idle {
        assert_eq!(
            look(s, &mut Vec::new()),
            Seen::Open,
            "the first three stay open"
        );
    }
    drop(idle.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut again = connect(addr);
    again
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (raw, closed, _) = read_until_closed(&mut again, Duration::from_secs(5));
    assert!(closed);
    assert_eq!(parse(&raw).0, 200, "{:?}", String::from_utf8_lossy(&raw));
}
