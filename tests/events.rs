//! Pushed events (`GET /api/v1/events`, issues #13 item 7 and #16 item 5): a long poll answers
//! when a fold changes, not at its timeout nor on a timer; `since` pages hand out every event
//! once; server-sent events in order, resumed with `Last-Event-ID`; tenancy; bad parameters;
//! the cap on waiters; `queue wait` and `submit --wait` on events.

mod common;

use common::{Master, BIN};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EIGHT_SLOTS: &str = "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 8\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn fold(command: &[&str]) -> Value {
    json!({"command": command, "resources": {"cpus": 0.1, "memory": "16M"}})
}

/// A fold no runner can take: stored held, it never runs.
fn held() -> Value {
    json!({"command": ["true"], "resources": {"cpus": 99999}})
}

/// When the fold ended: its last event (`attempt_ended ...; fold is done`), ms since the epoch.
fn ended_at(m: &Master, id: i64) -> i64 {
    let f = m.fold(id);
    let last = f["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "attempt_ended", "{f}");
    last["at"].as_i64().unwrap()
}

/// A long poll answers within 100 ms of a fold's end, not at its timeout; with nothing
/// happening it answers empty at the timeout, its seq unchanged. `queue wait` returns within
/// 100 ms of the end of folds that run 1 s: four waits started 50 ms apart, so a 200 ms poll
/// (the old `queue wait`) would be late by 150 ms or more in at least one of them.
/// `submit --wait` keeps `queue wait`'s exit codes.
#[test]
fn waits_return_when_folds_end() {
    let m = Master::start(Some(EIGHT_SLOTS));
    // Nothing happens: empty at the timeout.
    let (status, now) = m.request("GET", "/events?timeout=0", None);
    assert_eq!(status, 200, "{now}");
    let seq = now["seq"].as_i64().unwrap();
    let start = Instant::now();
    let v = m.get(&format!("/events?since={seq}&timeout=700ms"));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(690) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(v, json!({"events": [], "seq": seq}));

    // A fold of 1 s: polls return its events as they happen, the last within 100 ms.
    let id = m.submit(vec![fold(&["sleep", "1"])])[0];
    let (mut since, mut polls, mut done_at) = (seq, 0, None);
    while done_at.is_none() {
        let v = m.get(&format!("/events?since={since}&folds={id}&timeout=30s"));
        let got = now_ms();
        polls += 1;
        for e in v["events"].as_array().unwrap() {
            assert_eq!(e["fold"], id, "{e}");
            assert!(e["seq"].as_i64().unwrap() > since);
            if e["state"] == "done" {
                done_at = Some((got, e["at"].as_i64().unwrap()));
            }
        }
        since = v["seq"].as_i64().unwrap();
        assert!(polls < 10, "too many polls for one fold");
    }
    let (got, at) = done_at.unwrap();
    eprintln!(
        "the long poll answered {} ms after the fold ended",
        got - at
    );
    assert!(
        got - at < 100,
        "the long poll answered {} ms after the fold ended",
        got - at
    );

    // `queue wait` on four 1 s folds, one wait each, started 50 ms apart.
    let ids = m.submit(vec![fold(&["sleep", "1"]); 4]);
    let waits: Vec<_> = ids
        .iter()
        .map(|id| {
            let child = Command::new(BIN)
                .args(["queue", "wait", &id.to_string(), "--timeout", "30s"])
                .env("DATARUN_DATA_DIR", m.data_dir())
                .env_remove("DATARUN_SERVER")
                .env_remove("DATARUN_TOKEN")
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            std::thread::spawn(move || {
                let mut child = child;
                let status = child.wait().unwrap();
                (status, now_ms())
            })
        })
        .collect();
    let late: Vec<i64> = ids
        .iter()
        .zip(waits)
        .map(|(id, wait)| {
            let (status, exited) = wait.join().unwrap();
            assert!(status.success(), "queue wait {id}: {status}");
            exited - ended_at(&m, *id)
        })
        .collect();
    eprintln!("queue wait returned {late:?} ms after each fold ended");
    assert!(
        late.iter().all(|ms| (0..100).contains(ms)),
        "queue wait returned these ms after each fold ended: {late:?}"
    );

    // submit --wait: 0 done, 1 failed, 2 timed out.
    let sub = |args: &[&str]| {
        let mut all = vec!["submit", "--cpus", "0.1", "--memory", "16M", "--wait"];
        all.extend_from_slice(args);
        m.cli(&all)
    };
    let out = sub(&["--", "true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(m.fold(id)["fold"]["state"], "done");
    let out = sub(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed"));
    let out = sub(&["--timeout", "300ms", "--", "sleep", "5"]);
    assert_eq!(out.status.code(), Some(6), "a wait that runs out");
    let out = m.cli(&["submit", "--timeout", "1s", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "--timeout needs --wait");
    // Held as it is submitted (no runner has 4096 cpus): it stopped, so the wait ends at once
    // with 1, though no event came after the submit's own.
    let t = std::time::Instant::now();
    let out = m.cli(&[
        "submit",
        "--cpus",
        "4096",
        "--memory",
        "16M",
        "--wait",
        "--timeout",
        "20s",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("held"),
        "{out:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // An array waits for all its folds by their events alone.
    let out = m.cli(&[
        "submit",
        "--cpus",
        "0.1",
        "--memory",
        "16M",
        "--array",
        "0-5",
        "--wait",
        "--",
        "sh",
        "-c",
        "test $DATARUN_ARRAY_INDEX != 4",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed") && stderr.matches(',').count() == 0,
        "one failed: {stderr}"
    );
}

/// Pages of `since` over many folds, while folds change between pages, hand out every event
/// exactly once and in order (ids are dense: an admin sees 1..=newest); an owner sees only
/// its own folds' events, even naming another's fold ids, and its long poll on another's
/// fold answers nothing at the timeout while that fold changes; bad parameters answer 400
/// naming the parameter.
#[test]
fn pages_tenancy_and_bad_parameters() {
    let m = Master::start(None);
    let a = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let b = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    let submit = |token: &str, n: usize| m.submit_as(token, vec![held(); n]);
    let mut alice = Vec::new();
    let mut bob = Vec::new();
    for _ in 0..3 {
        alice.extend(submit(&a, 60));
        bob.extend(submit(&b, 40));
    }
    let page = |token: &str, query: &str| -> Value {
        let (status, v) = m.request_as(token, "GET", &format!("/events?{query}"), None);
        assert_eq!(status, 200, "{query}: {v}");
        v
    };
    // The admin pages from 0 by 7, releasing and holding folds between pages.
    let (mut seen, mut since, mut pages) = (Vec::new(), 0, 0);
    loop {
        let v = page(&m.token, &format!("since={since}&limit=7&timeout=0"));
        let events = v["events"].as_array().unwrap();
        if events.is_empty() {
            assert_eq!(v["seq"], since);
            break;
        }
        assert!(events.len() <= 7);
        seen.extend(events.iter().map(|e| e["seq"].as_i64().unwrap()));
        since = v["seq"].as_i64().unwrap();
        assert_eq!(since, *seen.last().unwrap());
        if pages % 10 == 0 {
            let id = alice[pages];
            let (status, v) = m.request("POST", &format!("/folds/{id}/remove"), None);
            assert_eq!(status, 200, "{v}");
        }
        pages += 1;
    }
    let newest = *seen.last().unwrap();
    assert_eq!(
        seen,
        (1..=newest).collect::<Vec<_>>(),
        "each event once, in order"
    );
    assert!(newest > 300, "{newest} events");

    // Bob from 0: exactly his folds' events, in order.
    let (mut bobs, mut since) = (Vec::new(), 0);
    loop {
        let v = page(&b, &format!("since={since}&limit=50&timeout=0"));
        let events = v["events"].as_array().unwrap().clone();
        since = v["seq"].as_i64().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            assert!(bob.contains(&e["fold"].as_i64().unwrap()), "bob sees {e}");
            bobs.push(e["seq"].as_i64().unwrap());
        }
    }
    assert_eq!(since, newest);
    assert_eq!(
        bobs.len(),
        bob.len(),
        "one submitted event per fold of bob's"
    );
    // Naming alice's folds shows bob nothing, as folds that do not exist.
    let named = page(
        &b,
        &format!("since=0&folds={},{}&timeout=0", alice[0], alice[1]),
    );
    let missing = page(&b, "since=0&folds=999998,999999&timeout=0");
    assert_eq!(named, missing);
    assert_eq!(named["events"], json!([]));
    // Bob's long poll on alice's fold while she holds it: nothing, at the timeout.
    let poll = {
        let (url, b, fold) = (m.url.clone(), b.clone(), alice[5]);
        std::thread::spawn(move || {
            let start = Instant::now();
            let v: Value = reqwest::blocking::Client::new()
                .get(format!(
                    "{url}/api/v1/events?since={newest}&folds={fold}&timeout=1s"
                ))
                .bearer_auth(b)
                .send()
                .unwrap()
                .json()
                .unwrap();
            (v, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, v) = m.request_as(&a, "POST", &format!("/folds/{}/remove", alice[5]), None);
    assert_eq!(status, 200, "{v}");
    let (v, took) = poll.join().unwrap();
    assert_eq!(v["events"], json!([]), "{v}");
    assert!(took >= Duration::from_millis(990), "{took:?}");
    // Alice's own poll sees it.
    let v = page(&a, &format!("since={newest}&folds={}", alice[5]));
    assert_eq!(v["events"][0]["kind"], "removed", "{v}");
    assert_eq!(v["events"][0]["state"], "removed", "{v}");

    // Bad parameters: 400 naming the parameter, as JSON.
    let too_many: Vec<String> = (1..=1001).map(|i| i.to_string()).collect();
    let too_many = format!("folds={}", too_many.join(","));
    let after = format!("since={}", newest + 1000);
    for (query, named) in [
        ("since=x", "since: "),
        ("since=-1", "since: "),
        (after.as_str(), "since: "),
        ("folds=1,abc", "folds: "),
        ("folds=", "folds: "),
        (
            too_many.as_str(),
            "folds: 1001 fold ids is over the limit of 1000",
        ),
        ("timeout=soon", "timeout: "),
        ("timeout=61s", "timeout: "),
        ("limit=0", "limit: "),
        ("limit=1001", "limit: "),
        ("limit=x", "limit: "),
        ("sinse=1", "query: "),
    ] {
        let (status, v) = m.request_as(&b, "GET", &format!("/events?{query}"), None);
        assert_eq!(status, 400, "{query}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(named), "{query}: {message}");
    }
}

/// Reads server-sent events until `n` events came: (id, the event's JSON).
/// A long poll of `GET /events` with `token`, waiting `timeout`, on a thread: its status.
fn long_poll(m: &Master, token: &str, timeout: &str) -> std::thread::JoinHandle<u16> {
    let (url, token) = (m.url.clone(), token.to_string());
    let url = format!("{url}/api/v1/events?timeout={timeout}");
    std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    })
}

fn read_sse(resp: reqwest::blocking::Response, n: usize) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    let mut id = None;
    for line in BufReader::new(resp).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(data) = line.strip_prefix("data: ") {
            out.push((
                id.take().expect("an id before data"),
                serde_json::from_str(data).unwrap(),
            ));
            if out.len() == n {
                break;
            }
        }
    }
    out
}

/// Server-sent events deliver a fold's events in order, each with its seq as id, and resume
/// after `Last-Event-ID`; at most `--max-waiters` long polls and streams at once: one more
/// answers 503 with Retry-After, and once they end there is room again; at shutdown they end
/// at once.
#[test]
fn server_sent_events_and_the_waiter_cap() {
    let mut m = Master::start_with(Some(EIGHT_SLOTS), &["--max-waiters", "2"]);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let stream = |query: &str, last: Option<i64>| {
        let mut req = http
            .get(format!("{}/api/v1/events?{query}", m.url))
            .bearer_auth(&m.token)
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            req = req.header("last-event-id", last.to_string());
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        resp
    };
    // From now, before the fold exists: its four events as they happen.
    let live = stream("", None);
    let id = m.submit(vec![fold(&["true"])])[0];
    let events = read_sse(live, 4);
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["submitted", "assigned", "started", "attempt_ended"]);
    for (i, (seq, e)) in events.iter().enumerate() {
        assert_eq!(e["seq"], *seq);
        assert_eq!(e["fold"], id);
        if i > 0 {
            assert!(*seq > events[i - 1].0, "in order");
        }
    }
    assert_eq!(events[3].1["state"], "done");
    // Resumed after the second: the last two again, from the backlog.
    // (`state` is the fold's when an event is its newest as it is read: `started` had one live.)
    let resumed = read_sse(stream(&format!("since=0&folds={id}"), Some(events[1].0)), 2);
    let without_state = |events: &[(i64, Value)]| -> Vec<(i64, Value)> {
        let mut events = events.to_vec();
        for (_, e) in &mut events {
            e.as_object_mut().unwrap().remove("state");
        }
        events
    };
    assert_eq!(without_state(&resumed), without_state(&events[2..]));
    assert_eq!(resumed[1].1["state"], "done");

    // Two long polls wait; a third request is refused while they do.
    let polls: Vec<_> = (0..2).map(|_| long_poll(&m, &m.token, "1500ms")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let resp = http
        .get(format!("{}/api/v1/events?timeout=0", m.url))
        .bearer_auth(&m.token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().unwrap();
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-waiters"),
        "{v}"
    );
    for p in polls {
        assert_eq!(p.join().unwrap(), 200);
    }
    let (status, v) = m.request("GET", "/events?timeout=0", None);
    assert_eq!(status, 200, "room again: {v}");

    // At shutdown a long poll answers and a stream ends at once: the master exits promptly
    // (not after its 10 s grace for requests in flight).
    let poll = {
        let (url, token) = (m.url.clone(), m.token.clone());
        std::thread::spawn(move || {
            let resp = reqwest::blocking::Client::new()
                .get(format!("{url}/api/v1/events?timeout=60s"))
                .bearer_auth(token)
                .send()
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().unwrap())
        })
    };
    let live = stream("", None);
    let ended = std::thread::spawn(move || read_sse(live, 1).len());
    std::thread::sleep(Duration::from_millis(300));
    let mut child = m.child.take().unwrap();
    let start = Instant::now();
    // SAFETY: kill only sends a signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let (status, v) = poll.join().unwrap();
    assert_eq!((status, &v["events"]), (200, &json!([])), "{v}");
    assert_eq!(
        ended.join().unwrap(),
        0,
        "the stream ended without an event"
    );
}

/// One owner holds at most an eighth of `--max-waiters` (16 here: 2): a third long poll of
/// alice's answers 503 naming her, while bob and an admin still get theirs; once hers end,
/// she has room again.
#[test]
fn one_owner_holds_an_eighth_of_the_waiters() {
    let m = Master::start_with(Some(EIGHT_SLOTS), &["--max-waiters", "16"]);
    let alice = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let bob = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    let polls: Vec<_> = (0..2).map(|_| long_poll(&m, &alice, "2s")).collect();
    std::thread::sleep(Duration::from_millis(700));
    let (status, v) = m.request_as(&alice, "GET", "/events?timeout=0", None);
    assert_eq!(status, 503, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"alice\"") && message.contains("an eighth"),
        "{v}"
    );
    for token in [&bob, &m.token] {
        let (status, v) = m.request_as(token, "GET", "/events?timeout=0", None);
        assert_eq!(status, 200, "{v}");
    }
    for p in polls {
        assert_eq!(p.join().unwrap(), 200);
    }
    let (status, v) = m.request_as(&alice, "GET", "/events?timeout=0", None);
    assert_eq!(status, 200, "room again: {v}");
}
