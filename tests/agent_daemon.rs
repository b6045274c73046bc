//! The agent as a daemon (`datarun agent --listen SOCKET`): masters come and go through
//! `datarun agent --connect SOCKET` (what the master runs over ssh), folds keep running while
//! nobody is connected, and a reconnecting master learns what runs and what finished.

use datarun::model::Outcome;
use datarun::protocol::{self, FromAgent, Grant, LogData, RunAttempt, ToAgent, PROTOCOL_VERSION};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_datarun");

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(dir: &Path) -> Daemon {
    let socket = dir.join("agent.sock");
    let child = Command::new(EXE)
        .args(["agent", "--listen"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .args(["--runner", "r1", "--executor", "process"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start the agent daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon never made its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon { child, socket }
}

/// A master's connection through `datarun agent --connect`.
struct Conn {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<FromAgent>,
}

impl Conn {
    fn open(socket: &Path) -> Conn {
        let mut child = Command::new(EXE)
            .args(["agent", "--connect"])
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start agent --connect");
        let stdin = child.stdin.take();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let msg: FromAgent = protocol::decode(&line).expect("a protocol message");
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Conn {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, msg: &ToAgent) {
        let stdin = self.stdin.as_mut().expect("open");
        stdin
            .write_all(protocol::encode(msg).as_bytes())
            .expect("write to the bridge");
        stdin.flush().unwrap();
    }

    /// The next message matching `want`, skipping others (progress, started).
    fn expect<T>(&self, what: &str, mut want: impl FnMut(FromAgent) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(msg) => {
                    if let Some(t) = want(msg) {
                        return t;
                    }
                }
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    fn hello(&mut self) -> (Vec<i64>, Vec<datarun::protocol::AttemptReport>) {
        self.send(&ToAgent::Hello {
            version: PROTOCOL_VERSION,
            runner: "r1".into(),
        });
        self.expect("hello", |m| match m {
            FromAgent::Hello {
                running, finished, ..
            } => Some((running, finished)),
            _ => None,
        })
    }

    /// Hangs up like a dying ssh session: the bridge's stdin closes and it exits.
    fn close(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the bridge exits cleanly: {status}");
    }
}

/// The bytes of a short log (inline in the report).
fn inline(log: &LogData) -> Vec<u8> {
    match log {
        LogData::Inline(text) => protocol::unb64(text).unwrap(),
        other => panic!("a short log travels inline: {other:?}"),
    }
}

fn run(attempt: i64, script: &str) -> ToAgent {
    ToAgent::Run(RunAttempt {
        attempt,
        fold: attempt,
        command: vec!["sh".into(), "-c".into(), script.into()],
        image: None,
        env: BTreeMap::new(),
        inputs: vec![],
        grant: Grant {
            millicpus: 1000,
            memory: 256 << 20,
            gpus: vec![],
        },
        soft_limit_ms: None,
        hard_limit_ms: Some(60_000),
        log_limit: 1 << 20,
        output_limit: 1 << 20,
        after: None,
    })
}

#[test]
fn folds_outlive_master_connections() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path());

    let mut first = Conn::open(&daemon.socket);
    let (running, finished) = first.hello();
    assert!(running.is_empty() && finished.is_empty());
    first.send(&run(
        1,
        "sleep 1.5; echo one-done; echo result > $DATARUN_OUTPUT/r.txt",
    ));
    first.send(&run(2, "sleep 30"));
    first.expect("started 1", |m| {
        matches!(m, FromAgent::Started { attempt: 1 }).then_some(())
    });
    // The master goes away mid-fold.
    first.close();

    // A health check does not need (or displace) a master.
    let ping = Command::new(EXE)
        .args(["agent", "--ping"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let facts: serde_json::Value = serde_json::from_slice(&ping.stdout).unwrap();
    assert!(facts["cpus"].as_f64().unwrap() >= 1.0, "{facts}");
    assert!(facts["disk_free"].as_u64().unwrap() > 0, "{facts}");

    // While nobody listens, attempt 1 finishes; the daemon keeps its result.
    std::thread::sleep(Duration::from_millis(2500));
    let mut second = Conn::open(&daemon.socket);
    let (running, finished) = second.hello();
    assert_eq!(running, vec![2], "attempt 2 still runs in the same daemon");
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].attempt, 1);
    assert_eq!(finished[0].outcome, Outcome::Success);
    let log = inline(&finished[0].log);
    assert!(String::from_utf8_lossy(&log).contains("one-done"));
    // Its output is listed by size and hash, and sent in chunks when asked for.
    let out = &finished[0].outputs;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].name.as_str(), out[0].size), ("r.txt", 7));
    assert_eq!(out[0].sha256, datarun::store::sha256_hex(b"result\n"));
    second.send(&ToAgent::Fetch {
        attempt: 1,
        file: "output/r.txt".into(),
        offset: 2,
        len: 1 << 20,
    });
    let (data, eof) = second.expect("chunk", |m| match m {
        FromAgent::Chunk {
            attempt: 1,
            offset: 2,
            data,
            eof,
            ..
        } => Some((data, eof)),
        _ => None,
    });
    assert_eq!(
        (protocol::unb64(&data).unwrap(), eof),
        (b"sult\n".to_vec(), true)
    );
    second.send(&ToAgent::Fetch {
        attempt: 2,
        file: "output/r.txt".into(),
        offset: 0,
        len: 10,
    });
    second.expect("nothing of a running attempt", |m| match m {
        FromAgent::FetchFailed { attempt: 2, .. } => Some(()),
        _ => None,
    });

    // A run the daemon already has is not started twice; a cancel reaches the running fold.
    second.send(&ToAgent::Ack { attempt: 1 });
    second.send(&run(2, "sleep 30"));
    second.send(&ToAgent::Cancel { attempt: 2 });
    let report = second.expect("finished 2", |m| match m {
        FromAgent::Finished(r) if r.attempt == 2 => Some(r),
        _ => None,
    });
    assert_eq!(report.outcome, Outcome::Cancelled);

    // A newer master replaces the older connection, whose bridge then ends.
    let mut third = Conn::open(&daemon.socket);
    let (running, finished) = third.hello();
    assert!(running.is_empty(), "{running:?}");
    assert_eq!(
        finished.iter().map(|f| f.attempt).collect::<Vec<_>>(),
        vec![2],
        "acknowledged results are forgotten, unacknowledged ones reported again"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if second.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replaced connection was not closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    third.close();
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused_and_ping_without_daemon_fails() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path());
    let out = Command::new(EXE)
        .args(["agent", "--listen"])
        .arg(&daemon.socket)
        .arg("--state-dir")
        .arg(dir.path().join("agent2"))
        .args(["--runner", "r1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another agent already listens"), "{err}");

    let out = Command::new(EXE)
        .args(["agent", "--ping"])
        .arg(dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no agent answers on"), "{err}");
}

#[test]
fn inputs_travel_once_per_runner() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path());
    let mut conn = Conn::open(&daemon.socket);
    conn.hello();
    // Several chunks' worth: the agent pulls it in pieces.
    let data = b"shared training table\n".repeat(120_000);
    let sha = datarun::store::sha256_hex(&data);
    let with_input = |attempt: i64| {
        let ToAgent::Run(mut run) = run(attempt, "cat \"$DATARUN_INPUT/table.csv\" | wc -c") else {
            unreachable!()
        };
        run.inputs = vec![datarun::model::InputRef {
            name: "table.csv".into(),
            sha256: sha.clone(),
        }];
        ToAgent::Run(run)
    };
    conn.send(&with_input(1));
    conn.send(&with_input(2));
    let mut asked = Vec::new();
    let mut answered = 0;
    let mut done = Vec::new();
    while done.len() < 2 {
        conn.expect("blob requests and results", |m| match m {
            FromAgent::FetchBlob {
                sha256,
                offset,
                len,
            } => {
                assert_eq!(sha256, sha);
                asked.push((offset, len));
                Some(())
            }
            FromAgent::Finished(r) => {
                done.push(r);
                Some(())
            }
            _ => None,
        });
        for &(offset, len) in &asked[answered..] {
            let end = (offset + len).min(data.len() as u64);
            conn.send(&ToAgent::BlobChunk {
                sha256: sha.clone(),
                offset,
                size: data.len() as u64,
                data: protocol::b64(&data[offset as usize..end as usize]),
                eof: end == data.len() as u64,
            });
        }
        answered = asked.len();
    }
    let mut offsets: Vec<u64> = asked.iter().map(|(o, _)| *o).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(
        offsets.len(),
        asked.len(),
        "each chunk asked once: {asked:?}"
    );
    assert_eq!(
        asked.len(),
        3,
        "2.6 MB in 1 MiB chunks, for both attempts: {asked:?}"
    );
    for r in &done {
        assert_eq!(r.outcome, Outcome::Success, "{r:?}");
        let log = String::from_utf8(inline(&r.log)).unwrap();
        assert_eq!(log.trim(), data.len().to_string());
    }
    // A third fold with the same input runs from the runner's cache: no request at all.
    conn.send(&with_input(3));
    let first = conn.expect("started or need", |m| match m {
        FromAgent::FetchBlob { .. } => Some("need"),
        FromAgent::Started { .. } => Some("started"),
        _ => None,
    });
    assert_eq!(first, "started");

    // A blob whose bytes do not match its hash never reaches a fold: the attempt ends in error.
    let claimed = datarun::store::sha256_hex(b"what the fold was promised");
    let ToAgent::Run(mut bad) = run(4, "true") else {
        unreachable!()
    };
    bad.inputs = vec![datarun::model::InputRef {
        name: "x".into(),
        sha256: claimed.clone(),
    }];
    conn.send(&ToAgent::Run(bad));
    let offset = conn.expect("a blob request", |m| match m {
        FromAgent::FetchBlob { sha256, offset, .. } if sha256 == claimed => Some(offset),
        _ => None,
    });
    conn.send(&ToAgent::BlobChunk {
        sha256: claimed.clone(),
        offset,
        size: 5,
        data: protocol::b64(b"other"),
        eof: true,
    });
    let report = conn.expect("attempt 4 ends", |m| match m {
        FromAgent::Finished(r) if r.attempt == 4 => Some(r),
        _ => None,
    });
    let Outcome::Error { message } = &report.outcome else {
        panic!("{report:?}")
    };
    assert!(message.contains("does not match its sha256"), "{message}");
    assert!(
        !dir.path().join("agent/blobs").join(&claimed).exists(),
        "nothing is cached"
    );
    conn.close();
}
