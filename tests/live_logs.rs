//! Live logs (README "Live logs"): `datarun fold log ID --follow` and `GET /folds/{id}/log?
//! follow=1` show a running fold's output as it is written. A fold prints a line every 200 ms
//! for 5 s with the kernel's uptime in it (`/proc/uptime`: one clock for the host, its
//! containers and the sshd hosts' sibling containers); each line must reach the follower
//! within 1 s of being written, for a process fold (local runner), a docker fold and a docker
//! fold on an ssh runner, and the followed bytes must equal the recorded log. Also: another
//! owner's follow is the 404 of a missing fold, a done fold's follow answers its log and ends
//! at once, offsets past the end answer nothing, bad parameters are 400. Needs Docker and the
//! sshd image for those cases; fails (never skips) without them.

mod common;
#[path = "common/hosts.rs"]
mod hosts;

use common::{sh, Master, BUSYBOX};
use hosts::{Hosts, Leftovers};
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_datarun");

const PROCESS_RUNNER: &str = "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 4\ncpus = 4\nmemory = \"4G\"\nqueues = [\"*\"]\n";

/// 25 lines, one every 200 ms, each with the uptime when it was written.
const TICKER: &str = "i=0; while [ $i -lt 25 ]; do read up rest < /proc/uptime; echo \"line $i at $up\"; i=$((i+1)); sleep 0.2; done";

/// The kernel's uptime in seconds (10 ms resolution): the clock the fold's lines carry.
fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// What a follower saw: each line with how long after its writing it arrived, and the bytes.
struct Followed {
    lags: Vec<f64>,
    bytes: Vec<u8>,
}

impl Followed {
    /// Reads lines until the end, each recorded as it arrives.
    fn read(mut reader: impl BufRead) -> Followed {
        let mut seen = Followed {
            lags: Vec::new(),
            bytes: Vec::new(),
        };
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap() > 0 {
            seen.record(&line);
            line.clear();
        }
        seen
    }

    fn record(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        let text = String::from_utf8_lossy(line);
        if let Some(at) = text.trim_end().rsplit(" at ").next() {
            if let Ok(written) = at.parse::<f64>() {
                self.lags.push(uptime() - written);
            }
        }
    }

    /// Every line came, the first one (and each after it) within 1 s of being written.
    fn check(&self, what: &str) {
        assert_eq!(self.lags.len(), 25, "{what}: lines followed");
        let worst = self.lags.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "{what}: first line after {:.2}s, worst {worst:.2}s",
            self.lags[0]
        );
        assert!(
            self.lags[0] <= 1.0,
            "{what}: the first line arrived {:.2}s after it was written",
            self.lags[0]
        );
        assert!(worst <= 1.0, "{what}: a line arrived {worst:.2}s late");
    }
}

/// Follows fold `id` with the CLI; returns what it printed, as it came, and its exit code.
fn follow_cli(m: &Master, id: i64) -> (Followed, Option<i32>) {
    let mut child = Command::new(EXE)
        .args(["fold", "log", &id.to_string(), "--follow"])
        .env("DATARUN_DATA_DIR", m.data_dir())
        .env_remove("DATARUN_SERVER")
        .env_remove("DATARUN_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Followed::read(BufReader::new(child.stdout.take().unwrap()));
    let status = child.wait().unwrap();
    (seen, status.code())
}

/// Follows fold `id` over HTTP as `token`: status, headers and the lines as they came.
fn follow_http(
    m: &Master,
    token: &str,
    query: &str,
    id: i64,
) -> (u16, reqwest::header::HeaderMap, Followed) {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(format!("{}/api/v1/folds/{id}/log?{query}", m.url))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, Followed::read(BufReader::new(resp)))
}

fn recorded_log(m: &Master, id: i64) -> Vec<u8> {
    let (status, _, log) = m.get_bytes(&format!("/folds/{id}/log"));
    assert_eq!(status, 200);
    log
}

#[test]
fn a_process_fold_is_followed_live_by_the_cli_and_the_api() {
    let m = Master::start(Some(PROCESS_RUNNER));
    let ids = m.submit(vec![sh(TICKER), sh(TICKER)]);
    // Both follows start before the folds write anything (they wait for the attempt).
    let api = std::thread::scope(|s| {
        let api = s.spawn(|| follow_http(&m, &m.token, "follow=1", ids[1]));
        // Without follow, a running fold's log is what it wrote so far (the CLI's and the
        // API's), and from an offset.
        let so_far = s.spawn(|| {
            m.wait_state(ids[0], "running", Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(1500));
            let (status, _, now) = m.get_bytes(&format!("/folds/{}/log", ids[0]));
            assert_eq!(status, 200);
            let cli = m.cli_ok(&["fold", "log", &ids[0].to_string()]);
            let (_, headers, from) = m.get_bytes(&format!("/folds/{}/log?offset=5", ids[0]));
            assert_eq!(headers["x-datarun-log-offset"], "5");
            (now, cli, from)
        });
        let (cli, code) = follow_cli(&m, ids[0]);
        assert_eq!(code, Some(0), "the CLI exits 0 for a done fold");
        cli.check("process fold, CLI");
        assert_eq!(
            String::from_utf8_lossy(&cli.bytes),
            String::from_utf8_lossy(&recorded_log(&m, ids[0])),
            "the followed bytes are the recorded log"
        );
        let (now, cli_now, from) = so_far.join().unwrap();
        let log = recorded_log(&m, ids[0]);
        assert!(
            now.len() > 20 && now.len() < log.len(),
            "{} of {} bytes",
            now.len(),
            log.len()
        );
        assert!(log.starts_with(&now) && log.starts_with(cli_now.as_bytes()));
        assert!(!cli_now.is_empty());
        assert!(log[5..].starts_with(&from) && !from.is_empty());
        api.join().unwrap()
    });
    let (status, headers, followed) = api;
    assert_eq!(status, 200);
    assert_eq!(headers["x-datarun-log-offset"], "0");
    followed.check("process fold, API");
    assert_eq!(followed.bytes, recorded_log(&m, ids[1]));
    m.wait_all(&ids, Duration::from_secs(30));

    // A fold that failed: its follow ends with its exit meaning.
    let failed = m.submit(vec![json!({
        "command": ["sh", "-c", "echo bye; exit 3"],
        "resources": { "cpus": 0.1, "memory": "64M" },
        "max_retries": 0,
    })]);
    let (seen, code) = follow_cli(&m, failed[0]);
    assert_eq!(seen.bytes, b"bye\n");
    assert_eq!(code, Some(1), "a fold that did not end done exits 1");
}

#[test]
fn follows_of_done_folds_offsets_and_tenancy() {
    let m = Master::start(Some(PROCESS_RUNNER));
    let alice = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let bob = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    let ids = m.submit_as(
        &alice,
        vec![sh("printf 'one\\ntwo\\nthree\\n'"), sh("sleep 30")],
    );
    m.wait_all(&ids[..1], Duration::from_secs(30));
    let done = ids[0];

    // A done fold's follow answers its whole log and ends at once.
    let t = Instant::now();
    let (status, headers, seen) = follow_http(&m, &alice, "follow=1", done);
    assert_eq!(status, 200);
    assert_eq!(seen.bytes, b"one\ntwo\nthree\n");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(headers.contains_key("x-datarun-attempt"));
    // From an offset, followed or not; past the end, nothing (and at once).
    let (_, headers, seen) = follow_http(&m, &alice, "follow=1&offset=4", done);
    assert_eq!(seen.bytes, b"two\nthree\n");
    assert_eq!(headers["x-datarun-log-offset"], "4");
    let (_, _, seen) = follow_http(&m, &alice, "offset=8", done);
    assert_eq!(seen.bytes, b"three\n");
    let t = Instant::now();
    for query in ["offset=1000", "follow=1&offset=1000"] {
        let (status, _, seen) = follow_http(&m, &alice, query, done);
        assert_eq!((status, seen.bytes.len()), (200, 0), "{query}");
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    // The CLI too, with its exit code.
    let out = m.cli(&[
        "fold",
        "log",
        &done.to_string(),
        "--follow",
        "--offset",
        "8",
    ]);
    assert_eq!(out.stdout, b"three\n");
    assert_eq!(out.status.code(), Some(0));
    let out = m.cli(&["fold", "log", "987654", "--follow"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a missing fold is not found (3)"
    );

    // Another owner: the very 404 of a missing fold, as JSON, running or done.
    m.wait_state(ids[1], "running", Duration::from_secs(30));
    let (missing_status, missing) = m.request_as(&bob, "GET", "/folds/987654/log?follow=1", None);
    assert_eq!(missing_status, 404);
    for id in ids.iter() {
        for query in ["follow=1", "offset=0", ""] {
            let (status, v) = m.request_as(&bob, "GET", &format!("/folds/{id}/log?{query}"), None);
            assert_eq!(status, 404, "bob reads alice's fold {id}: {v}");
            assert_eq!(
                v["error"]["message"],
                missing["error"]["message"]
                    .as_str()
                    .unwrap()
                    .replace("987654", &id.to_string())
            );
        }
    }
    // Bad parameters.
    for query in ["offset=-1", "offset=x", "follow=yes", "tail=3"] {
        let (status, v) = m.request_as(&alice, "GET", &format!("/folds/{done}/log?{query}"), None);
        assert_eq!(status, 400, "{query}: {v}");
        assert!(v["error"]["message"].is_string(), "{query}: {v}");
    }
    // The follow of the running fold ends when it is removed, with what it logged.
    let follower = std::thread::spawn({
        let url = format!("{}/api/v1/folds/{}/log?follow=1", m.url, ids[1]);
        let token = alice.clone();
        move || {
            let t = Instant::now();
            let mut body = Vec::new();
            reqwest::blocking::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .unwrap()
                .read_to_end(&mut body)
                .unwrap();
            (t.elapsed(), body)
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = m.request_as(&alice, "POST", &format!("/folds/{}/remove", ids[1]), None);
    assert_eq!(status, 200);
    let (took, body) = follower.join().unwrap();
    assert!(body.is_empty());
    assert!(
        took < Duration::from_secs(10),
        "the follow ended after {took:?}"
    );
}

#[test]
fn a_docker_fold_is_followed_live() {
    common::ensure_image("build-busybox.sh", BUSYBOX);
    let inventory = format!("[[runner]]\nname = \"dock\"\ntransport = \"local\"\nexecutor = \"docker\"\nimages = [\"{BUSYBOX}\"]\nslots = 2\ncpus = 2\nmemory = \"2G\"\nqueues = [\"*\"]\n");
    let m = Master::start(Some(&inventory));
    follow_busybox_ticker(&m, "docker fold");
}

/// Submits the ticker in the busybox image and follows it with the CLI: live, done, and the
/// followed bytes are the recorded log.
fn follow_busybox_ticker(m: &Master, what: &str) {
    let id = m.submit(vec![json!({
        "command": ["sh", "-c", TICKER],
        "image": BUSYBOX,
        "resources": { "cpus": 0.1, "memory": "64M" },
    })])[0];
    let (seen, code) = follow_cli(m, id);
    assert_eq!(code, Some(0), "{what}: the CLI exits 0 for a done fold");
    seen.check(what);
    assert_eq!(
        seen.bytes,
        recorded_log(m, id),
        "{what}: followed = recorded"
    );
}

#[test]
fn a_fold_on_an_ssh_runner_is_followed_live() {
    common::ensure_image("build-busybox.sh", BUSYBOX);
    let hosts = Hosts::start_runners(1);
    let _leftovers = Leftovers(vec![hosts.state_dir(0).to_path_buf()]);
    let inventory = hosts.inventory(&format!(
        "slots = 2\ncpus = 4\nmemory = \"4G\"\nexecutor = \"docker\"\nimages = [\"{BUSYBOX}\"]\nqueues = [\"*\"]"
    ));
    let file = hosts.dir.path().join("runners.toml");
    std::fs::write(&file, &inventory).unwrap();
    let known = hosts.known_hosts();
    let out = Command::new(EXE)
        .arg("provision")
        .arg(&file)
        .arg("--known-hosts")
        .arg(&known)
        .arg("--accept-new")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "provision failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = Master::start_with(
        Some(&inventory),
        &["--known-hosts", known.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.get("/runners")["runners"][0]["state"] != "ready" {
        assert!(
            Instant::now() < deadline,
            "the ssh runner never got ready: {}",
            m.get("/runners")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    follow_busybox_ticker(&m, "fold on an ssh runner");
}

/// A fold that floods 12 MB: the master keeps answering while it is followed, the recorded log
/// is the kept 1 MiB after its marker, and the follower, however far behind it fell, ends with
/// exactly those kept bytes (a marker line where bytes it had not read were dropped).
#[test]
fn a_flood_is_followed_without_slowing_the_master() {
    let m = Master::start(Some(PROCESS_RUNNER));
    // 12 MB in 40 bursts over 2 s or more: faster than a follower reads (64 KiB per ask).
    let flood = "i=0; while [ $i -lt 40 ]; do head -c 300000 /dev/zero | tr '\\0' x; i=$((i+1)); sleep 0.05; done; echo; echo the end";
    let id = m.submit(vec![sh(flood)])[0];
    let follower = std::thread::scope(|s| {
        let follower = s.spawn(|| follow_cli(&m, id));
        let mut worst = Duration::ZERO;
        while !follower.is_finished() {
            let t = Instant::now();
            m.get("/queue");
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("flood: the slowest GET /queue while followed took {worst:?}");
        assert!(worst < Duration::from_secs(2), "GET /queue took {worst:?}");
        follower.join().unwrap()
    });
    let (seen, code) = follower;
    assert_eq!(code, Some(0));
    let log = recorded_log(&m, id);
    let (dropped, marker) = datarun::agent::tail::dropped_head(&log);
    assert_eq!(log.len() - marker, 1 << 20, "the kept tail is 1 MiB");
    assert_eq!(dropped + (1 << 20), 12_000_000 + 9);
    assert!(log.ends_with(b"\nthe end\n"));
    assert!(
        seen.bytes.ends_with(&log[marker..]),
        "the follower ends with the kept log ({} bytes followed)",
        seen.bytes.len()
    );
    // Offsets over the recorded log: from 0 it is the whole of it; below the dropped head a
    // marker for what is gone, then the kept bytes; past the head the kept bytes from there.
    let kept = &log[marker..];
    let (_, headers, seen0) = follow_http(&m, &m.token, "offset=0", id);
    assert_eq!(seen0.bytes, log);
    assert_eq!(
        headers["x-datarun-log-skipped"],
        dropped.to_string().as_str()
    );
    let (_, headers, some) = follow_http(&m, &m.token, "follow=1&offset=100", id);
    let gone = datarun::agent::tail::marker(dropped - 100);
    assert_eq!(some.bytes, [gone.as_bytes(), kept].concat());
    assert_eq!(
        headers["x-datarun-log-offset"],
        dropped.to_string().as_str()
    );
    let (_, headers, tail) = follow_http(&m, &m.token, &format!("offset={}", dropped + 5), id);
    assert_eq!(tail.bytes, kept[5..]);
    assert_eq!(headers["x-datarun-log-skipped"], "0");

    let markers = seen.bytes.windows(9).filter(|w| w == b"[datarun:").count();
    eprintln!(
        "flood: {} bytes followed, {markers} markers where the follower fell behind",
        seen.bytes.len()
    );
}

/// Follows count against `serve --max-waiters` (503 with Retry-After beyond), and end when the
/// master shuts down.
#[test]
fn follows_are_capped_and_end_at_shutdown() {
    let mut m = Master::start_with(Some(PROCESS_RUNNER), &["--max-waiters", "1"]);
    let id = m.submit(vec![sh("echo started; sleep 60")])[0];
    m.wait_state(id, "running", Duration::from_secs(30));
    let url = format!("{}/api/v1/folds/{id}/log?follow=1", m.url);
    let first = reqwest::blocking::Client::new()
        .get(&url)
        .bearer_auth(&m.token)
        .send()
        .unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let (status, v) = m.request("GET", &format!("/folds/{id}/log?follow=1"), None);
    assert_eq!(status, 503, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max-waiters"));
    let reader = std::thread::spawn(move || {
        let mut body = Vec::new();
        let mut first = first;
        let _ = first.read_to_end(&mut body);
        (Instant::now(), body)
    });
    std::thread::sleep(Duration::from_millis(500));
    let child = m.child.take().unwrap();
    let stopping = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (ended, body) = reader.join().unwrap();
    assert_eq!(body, b"started\n");
    let took = ended.duration_since(stopping);
    assert!(
        took < Duration::from_secs(5),
        "the follow ended {took:?} after SIGTERM"
    );
    let mut child = child;
    let _ = child.wait();
}
