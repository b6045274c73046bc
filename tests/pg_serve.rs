//! `serve --store postgres://…`: a master on PostgreSQL runs the queue, says it is active,
//! runs datasets and submissions end to end (scored results, the feed once), and says clearly
//! what PostgreSQL does not do (the scheduled backup: PostgreSQL's own tools); a master cut
//! off from the database stops and exits while the standby takes over.

mod common;

use common::ml::{b64, dataset, docker_inventory, ids, submit, wait_submission};
use common::{sh, Master};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(2);

fn health(m: &Master) -> Value {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("{}/api/v1/health", m.url))
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

/// The folds' ids of an array's or a sweep's answer.
fn fold_ids(v: &Value) -> Vec<i64> {
    v["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect()
}

fn wait_active(m: &Master, within: Duration) -> Duration {
    let t = Instant::now();
    while health(m)["role"] != "active" {
        assert!(t.elapsed() < within, "{} not active: {}", m.url, health(m));
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

#[test]
fn a_master_on_postgres_runs_folds() {
    let url = common::pg::database();
    let m = Master::start_with(None, &["--store", &url, "--leader-lease", "2s"]);
    wait_active(&m, Duration::from_secs(10));
    let h = health(&m);
    assert_eq!(h["store"], "postgres", "{h}");
    assert_eq!(h["active"], m.url.as_str(), "{h}");

    let ids = m.submit(vec![sh("echo hello")]);
    let done = m.wait_all(&ids, Duration::from_secs(30));
    assert_eq!(done[0]["state"], "done", "{}", done[0]);
    let f = m.fold(ids[0]);
    assert_eq!(f["attempts"].as_array().unwrap().len(), 1, "{f}");
    // Its log, read back from the database.
    let log = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/folds/{}/log", m.url, ids[0]))
        .bearer_auth(&m.token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(log, "hello\n");
    // The maintenance page reads its recent runs from the events.
    assert!(m.get("/maintenance")["recent"].is_array());
    // Its provenance, written with its result.
    let p = m.get(&format!("/folds/{}/provenance", ids[0]));
    assert_eq!(p["argv"][0], "sh", "{p}");
    assert_eq!(p["runner"]["name"], "local", "{p}");

    // The event feed: the backlog, then a long poll woken by the change signal of a write.
    let feed = m.get("/events?since=0");
    let kinds: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fold"] == ids[0])
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"submitted"), "{feed}");
    let seq = feed["seq"].as_i64().unwrap();
    let poll = {
        let (url, token) = (m.url.clone(), m.token.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let v: Value = reqwest::blocking::Client::new()
                .get(format!("{url}/api/v1/events?since={seq}&timeout=20s"))
                .bearer_auth(token)
                .send()
                .unwrap()
                .json()
                .unwrap();
            (v, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let more = m.submit(vec![sh("true")]);
    let (woke, waited) = poll.join().unwrap();
    assert!(
        waited < Duration::from_secs(10),
        "the long poll was not woken: {waited:?}"
    );
    assert!(
        woke["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["fold"] == more[0]),
        "{woke}"
    );

    // Arrays and dependencies: three folds one at a time (%1), then a fold after the last.
    let (status, v) = m.request(
        "POST",
        "/arrays",
        Some(json!({"spec": sh("sleep 0.3"), "array": "0-2%1"})),
    );
    assert_eq!(status, 201, "{v}");
    let members = fold_ids(&v);
    let mut after = sh("true");
    after["after"] = json!([{"fold": members[2]}]);
    let last = m.submit(vec![after]);
    assert_eq!(m.fold(last[0])["fold"]["state"], "waiting");
    let all: Vec<i64> = members.iter().chain(&last).copied().collect();
    for f in m.wait_all(&all, Duration::from_secs(30)) {
        assert_eq!(f["state"], "done", "{f}");
    }
    let array = m.get(&format!("/arrays/{}", v["array"]));
    assert_eq!(array["array"]["counts"]["done"], 3, "{array}");

    // A sweep: two points, each with its value, run and listed.
    let (status, v) = m.request(
        "POST",
        "/sweeps",
        Some(json!({"spec": sh("test \"$DATARUN_PARAM_X\" -gt 0"), "sweep": {"grid": {"x": [1, 2]}}})),
    );
    assert_eq!(status, 201, "{v}");
    let points = fold_ids(&v);
    for f in m.wait_all(&points, Duration::from_secs(30)) {
        assert_eq!(f["state"], "done", "{f}");
    }
    let sweep = m.get(&format!("/sweeps/{}", v["sweep"]));
    assert_eq!(sweep["points"][1]["params"]["x"], 2, "{sweep}");

    // An uploaded blob as a fold's input, pulled by the agent from the database.
    let (status, v) = m.raw(
        "POST",
        "/blobs",
        "application/octet-stream",
        b"x-marks".to_vec(),
    );
    assert_eq!(status, 201, "{v}");
    let mut reads = sh("test \"$(cat \"$DATARUN_INPUT/in.txt\")\" = x-marks");
    reads["inputs"] = json!([{"name": "in.txt", "sha256": v["sha256"]}]);
    let read = m.submit(vec![reads]);
    let done = m.wait_all(&read, Duration::from_secs(30));
    assert_eq!(done[0]["state"], "done", "{}", done[0]);

    // Tokens live in the database: made by the CLI with --store, accepted by the master.
    let out = m.cli(&["token", "create", "bob", "--store", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, v) = m.request_as(&bob, "GET", &format!("/folds/{}", ids[0]), None);
    assert_eq!(status, 404, "another owner's fold answers as missing: {v}");
    let (status, v) = m.request_as(&bob, "GET", "/queue", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["counts"].as_array().unwrap().len(), 0, "{v}");
    let list = m.cli_ok(&["token", "list", "--json", "--store", &url]);
    assert!(list.contains("\"owner\": \"bob\""), "{list}");
    let out = m.cli(&["token", "revoke", "--owner", "bob", "--store", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, v) = m.request_as(&bob, "GET", "/queue", None);
    assert_eq!(status, 401, "a revoked token: {v}");

    // The CLI says which master is active.
    let status = m.cli_ok(&["queue", "status"]);
    let first = status.lines().next().unwrap_or("");
    assert_eq!(
        first,
        format!("master: {} (active, postgres store)", m.url),
        "{status}"
    );
    let json: Value = serde_json::from_str(&m.cli_ok(&["runners", "status", "--json"])).unwrap();
    assert_eq!(json["master"]["role"], "active", "{json}");
}

/// The submission layer on PostgreSQL through the real binary, a Docker runner and the fold
/// image: a dataset uploaded, a split made, two submissions (one broken on purpose) scored by
/// the workflow task of the active master, the "new results" feed handing each result out once
/// to concurrent callers, a resubmit, the leaderboard, and the dataset kept while submissions
/// refer to it. And what PostgreSQL does not do: the scheduled backup, which says what to use.
#[test]
fn a_master_on_postgres_scores_submissions_and_feeds_each_result_once() {
    let url = common::pg::database();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("master.toml");
    std::fs::write(
        &cfg,
        "[maintenance.backup]\nschedule = \"* * * * * *\"\ndir = \"backups\"\nkeep = 2\n",
    )
    .unwrap();
    let m = Master::start_with(
        Some(&docker_inventory(3)),
        &[
            "--store",
            &url,
            "--leader-lease",
            "2s",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    wait_active(&m, Duration::from_secs(10));
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(&m, "iris", &csv, "species", &["accuracy"], &["classifier"]);
    let listed = m.get("/datasets");
    assert_eq!(listed["datasets"][0]["id"], d, "{listed}");
    let (status, split) = m.request(
        "POST",
        &format!("/datasets/{d}/splits"),
        Some(json!({"held_out_test": 0.2, "random_state": 42, "stratify": true})),
    );
    assert_eq!(status, 201, "{split}");
    assert_eq!(split["test"].as_array().unwrap().len(), 30, "{split}");
    let split_id = split["split"]["id"].as_i64().unwrap();
    let code =
        |dir: &str| b64(&std::fs::read(format!("examples/iris/{dir}/classifier.py")).unwrap());
    let request = |name: &str, dir: &str| {
        json!({"dataset_id": d, "split_id": split_id, "name": name,
               "files": {"classifier.py": code(dir)},
               "cv": {"k": 3, "seed": 42, "stratify": true},
               "resources": {"cpus": 1, "memory": "512M"}, "hard_time_limit": "5m"})
    };
    let good = submit(&m, request("logreg", "submission"));
    let broken = submit(&m, request("broken", "submission_broken"));
    let (status, v) = m.request(
        "POST",
        "/submissions",
        Some(request("logreg", "submission")),
    );
    assert_eq!(status, 409, "the same name again: {v}");
    let good = wait_submission(&m, good["id"].as_i64().unwrap(), Duration::from_secs(300));
    let broken = wait_submission(&m, broken["id"].as_i64().unwrap(), Duration::from_secs(300));
    for f in good["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "TESTED", "{f}");
        let acc = f["scores"]["test"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.9, "fold {}: test accuracy {acc}", f["fold_index"]);
        let (status, headers, _) =
            m.get_bytes(&format!("/submission-folds/{}/predictions/test", f["id"]));
        assert_eq!(status, 200);
        assert_eq!(headers["x-shape"], "30,3");
    }
    for f in broken["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "ERROR", "{f}");
        assert_eq!(
            f["reason"], "the submission failed: ValueError: this submission is broken on purpose",
            "{f}"
        );
    }

    // The feed: 4 concurrent callers get the 6 results exactly once between them.
    let take_new = || -> Vec<i64> {
        let (status, v) = m.request("POST", "/results/new", None);
        assert_eq!(status, 200, "{v}");
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let got: Vec<i64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4).map(|_| sc.spawn(take_new)).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let unique: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(got.len(), 6, "each result once: {got:?}");
    let all: BTreeSet<i64> = [ids(&good), ids(&broken)].concat().into_iter().collect();
    assert_eq!(unique, all);
    assert!(take_new().is_empty(), "nothing new later");

    // The leaderboard, then a resubmit of the broken one with the good code: new in the feed.
    let lb = m.get(&format!("/datasets/{d}/leaderboard"));
    assert_eq!(
        (
            lb["rows"][0]["name"].clone(),
            lb["rows"][0]["folds"].clone()
        ),
        (json!("logreg"), json!(3)),
        "{lb}"
    );
    let bid = broken["id"].as_i64().unwrap();
    let body = json!({"force": "files", "files": {"classifier.py": code("submission")}});
    let (status, v) = m.request("POST", &format!("/submissions/{bid}/resubmit"), Some(body));
    assert_eq!(status, 200, "{v}");
    let fixed = wait_submission(&m, bid, Duration::from_secs(300));
    for f in fixed["folds"].as_array().unwrap() {
        assert_eq!(
            (f["state"].as_str(), f["runs"].as_i64()),
            (Some("TESTED"), Some(2)),
            "{f}"
        );
    }
    let again: BTreeSet<i64> = take_new().into_iter().collect();
    assert_eq!(again, ids(&fixed).into_iter().collect());

    // A standby on the same database reads what the active master recorded, and sends the
    // feed (which takes results) to the active master.
    let standby = Master::start_with(None, &["--store", &url, "--leader-lease", "2s"]);
    assert_eq!(health(&standby)["role"], "standby", "{}", health(&standby));
    let seen = standby.get(&format!("/submissions/{bid}"));
    let results = |s: &Value| -> Vec<(Value, Value, Value, Value)> {
        s["folds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].clone(),
                    f["state"].clone(),
                    f["scores"].clone(),
                    f["delivered"].clone(),
                )
            })
            .collect()
    };
    let mut delivered = fixed.clone();
    for f in delivered["folds"].as_array_mut().unwrap() {
        f["delivered"] = json!(true);
    }
    assert_eq!(results(&seen["submission"]), results(&delivered), "{seen}");
    let board = standby.get(&format!("/datasets/{d}/leaderboard"));
    assert_eq!(board["rows"].as_array().map(Vec::len), Some(2), "{board}");
    assert_eq!(
        standby.get(&format!("/splits/{split_id}"))["split"]["id"],
        split_id
    );
    let (status, v) = standby.request("POST", "/results/new", None);
    assert_eq!(status, 503, "{v}");
    let (status, v) = m.request("DELETE", &format!("/datasets/{d}"), None);
    assert_eq!(status, 409, "a dataset with submissions stays: {v}");

    // Not on PostgreSQL: the scheduled backup (every second here), which fails saying what
    // to use instead, and changes nothing else.
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let recent = m.get("/maintenance")["recent"].clone();
        let found = recent
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["detail"].as_str())
            .find(|d| d.starts_with("backup:"))
            .map(str::to_string);
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no backup ran: {recent}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        failed,
        "backup: FAILED: the scheduled backup (use pg_dump or pg_basebackup): not on PostgreSQL yet (README \"PostgreSQL\" lists what is)"
    );
    assert!(!m
        .data_dir()
        .join("backups")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
}

#[test]
fn a_master_cut_off_from_the_database_exits_and_the_standby_takes_over() {
    let url = common::pg::database();
    let port = common::pg::cluster().port;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt.block_on(common::pg::Relay::start(port));
    let via_relay = url.replace(&format!(":{port}/"), &format!(":{}/", relay.port));
    let mut a = Master::start_with(None, &["--store", &via_relay, "--leader-lease", "2s"]);
    wait_active(&a, Duration::from_secs(10));
    let b = Master::start_with(None, &["--store", &url, "--leader-lease", "2s"]);
    assert_eq!(health(&b)["role"], "standby", "{}", health(&b));
    let ids = a.submit(vec![sh("true"), sh("true")]);
    a.wait_all(&ids, Duration::from_secs(30));

    // The standby answers reads from the database (its own token is there too) and refuses
    // writes and what only the active master knows, naming it.
    let f = b.get(&format!("/folds/{}", ids[0]));
    assert_eq!(f["fold"]["state"], "done", "{f}");
    assert_eq!(f["attempts"].as_array().map(Vec::len), Some(1), "{f}");
    assert!(f["why_pending"].is_null(), "{f}");
    let page = b.get("/folds?limit=2");
    assert_eq!(page["folds"].as_array().map(Vec::len), Some(2), "{page}");
    assert!(b.get("/queue")["counts"].as_array().is_some());
    // Its event feed follows the active master's writes: a long poll wakes.
    let seq = b.get("/events?since=0")["seq"].as_i64().unwrap();
    let poll = {
        let (url, token) = (b.url.clone(), b.token.clone());
        std::thread::spawn(move || {
            reqwest::blocking::Client::new()
                .get(format!("{url}/api/v1/events?since={seq}&timeout=20s"))
                .bearer_auth(token)
                .send()
                .unwrap()
                .json::<Value>()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let more = a.submit(vec![sh("true")]);
    let woke = poll.join().unwrap();
    assert!(
        woke["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["fold"] == more[0]),
        "{woke}"
    );
    a.wait_all(&more, Duration::from_secs(30));
    for (method, path) in [
        ("POST", "/folds"),
        ("GET", "/runners"),
        ("GET", "/folds/1/analyze"),
    ] {
        let (status, v) = b.request(method, path, Some(sh("true")).filter(|_| method == "POST"));
        assert_eq!(status, 503, "{method} {path}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&a.url), "{message}");
    }

    // The partition: A's bytes to and from the database wait in the relay.
    relay.pause(true);
    let cut = Instant::now();
    // A write sent to A now is not stored (A cannot reach the database, then exits).
    let sent = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .post(format!("{}/api/v1/folds/batch", a.url))
        .bearer_auth(&a.token)
        .json(&serde_json::json!({"folds": [sh("true")]}))
        .send()
        .map(|r| r.status().as_u16());
    assert!(
        !matches!(sent, Ok(201)),
        "a write acknowledged by a master cut off from the database"
    );
    wait_active(&b, LEASE * 3);
    let took = cut.elapsed();
    eprintln!("standby active {took:?} after the cut (lease {LEASE:?})");
    assert!(took <= LEASE + Duration::from_millis(1500), "took {took:?}");
    // A stepped down and exits with an error.
    let child = a.child.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the cut-off master did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!exit.success(), "{exit}");
    eprintln!("cut-off master exited {:?} after the cut", cut.elapsed());
    a.child = None;
    // Its late writes change nothing: B sees only the two folds.
    relay.pause(false);
    std::thread::sleep(Duration::from_millis(500));
    let counts = b.get("/queue");
    let total: u64 = counts["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total, 3,
        "only the folds acknowledged before the cut: {counts}"
    );
}

/// Webhooks on PostgreSQL: the fold's end makes its delivery pending in the same
/// transaction; the active master's delivery task sends it, retries it after a 500 with the
/// same event id and body, and records it delivered.
#[test]
fn a_master_on_postgres_delivers_webhooks() {
    let url = common::pg::database();
    let m = Master::start_with(
        None,
        &[
            "--store",
            &url,
            "--leader-lease",
            "2s",
            "--webhook-allow",
            "127.0.0.0/8",
            "--webhook-backoff",
            "300ms",
        ],
    );
    wait_active(&m, Duration::from_secs(10));
    let (hook, got) = common::hooks::receiver();
    let mut fold = sh("true");
    fold["webhook"] = json!(hook);
    let ids = m.submit(vec![fold]);
    let t = Instant::now();
    while got.lock().unwrap().len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{:?}",
            got.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = got.lock().unwrap().clone();
    assert_eq!((got[0].answered, got[1].answered), (500, 200));
    assert_eq!((&got[0].event, &got[0].body), (&got[1].event, &got[1].body));
    assert!(!got[1].signature.is_empty());
    let body: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(
        (body["id"].as_i64(), body["state"].as_str()),
        (Some(ids[0]), Some("done")),
        "{body}"
    );
    let t = Instant::now();
    loop {
        let w = &m.get("/webhooks")["webhooks"][0];
        if w["state"] == "delivered" {
            assert_eq!(
                (w["attempts"].as_i64(), w["event_id"].as_str()),
                (Some(2), Some(got[1].event.as_str())),
                "{w}"
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{w}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
