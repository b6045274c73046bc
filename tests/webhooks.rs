//! Webhooks (issue 16 item 5): folds and an array submitted through the real binary with
//! `--webhook` (and a fold through REST with another owner's token) call a receiver run by
//! the test. It verifies each delivery's HMAC with the token's secret (in Python's `hmac`,
//! not datarun's code), answers 500 to the first delivery to make the master retry it with
//! the same event id and body, and sees each end delivered once. A private address is
//! refused at submit (400 naming the field, nothing stored) unless `--webhook-allow` opens
//! its range, and loopback is refused by a master started without it.

mod common;

use common::hooks::{receiver, Received};
use common::Master;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FOUR_SLOTS: &str = "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 4\ncpus = 4\nmemory = \"4G\"\nqueues = [\"*\"]\n";

/// Python's `hmac` checks every delivery's signature with `secrets[event_id]`; the events
/// whose signature does not match.
fn bad_signatures(got: &[Received], secrets: &BTreeMap<String, String>) -> Vec<String> {
    use base64::Engine;
    let items: Vec<Value> = got
        .iter()
        .map(|r| {
            json!({
                "event": r.event,
                "secret": secrets[&r.event],
                "signature": r.signature,
                "body": base64::engine::general_purpose::STANDARD.encode(&r.body),
            })
        })
        .collect();
    let script = r#"
import base64, hashlib, hmac, json, sys
bad = []
for d in json.load(sys.stdin):
    want = "sha256=" + hmac.new(d["secret"].encode(), base64.b64decode(d["body"]), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, d["signature"]):
        bad.append(d["event"])
print(json.dumps(bad))
"#;
    let mut child = std::process::Command::new(common::python3())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(items).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn ends_are_delivered_signed_retried_and_once_per_event() {
    let m = Master::start_with(
        Some(FOUR_SLOTS),
        &[
            "--webhook-allow",
            "127.0.0.0/8",
            "--webhook-backoff",
            "300ms",
        ],
    );
    let (url, got) = receiver();

    // Another owner, with a token made by the CLI: it shows the webhook secret once, and the
    // token's owner reads the same from the API.
    let out = m.cli(&["token", "create", "ann"]);
    assert!(out.status.success());
    let ann = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let (status, v) = m.request_as(&ann, "GET", "/webhook-secret", None);
    assert_eq!(status, 200, "{v}");
    let ann_secret = v["secret"].as_str().unwrap().to_string();
    assert!(
        stderr.contains(&ann_secret),
        "token create shows the webhook secret: {stderr}"
    );
    // The admin token predates nothing, but its secret comes the same way.
    let admin_secret = m.get("/webhook-secret")["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(admin_secret, ann_secret);

    // Through the binary: two folds, and an array of three whose indices 1 and 2 fail.
    let folds = m.cli_ok(&[
        "submit",
        "--webhook",
        &url,
        "--count",
        "2",
        "--cpus",
        "0.1",
        "--memory",
        "16M",
        "--",
        "true",
    ]);
    let folds: Vec<i64> = folds.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(folds.len(), 2);
    let array = m.cli_ok(&[
        "submit",
        "--array",
        "0-2",
        "--webhook",
        &url,
        "--cpus",
        "0.1",
        "--memory",
        "16M",
        "--",
        "sh",
        "-c",
        "exit $DATARUN_ARRAY_INDEX",
    ]);
    let array_id: i64 = array
        .lines()
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Through REST, with ann's token.
    let (status, v) = m.request_as(
        &ann,
        "POST",
        "/folds",
        Some(json!({"command": ["true"], "resources": {"cpus": 0.1, "memory": "16M"}, "webhook": url})),
    );
    assert_eq!(status, 201, "{v}");
    let ann_fold = v["id"].as_i64().unwrap();
    assert!(
        v["fold"]["spec"].get("webhook").is_none(),
        "the URL is the fold's webhook, not its spec: {v}"
    );

    // Four ends: each delivered (answered 200) once; the first delivery, answered 500, again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let all = got.lock().unwrap().clone();
        let ok: Vec<Received> = all.iter().filter(|r| r.answered == 200).cloned().collect();
        if ok.len() >= 4 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 4 delivered: {all:?}",
            ok.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Nothing more comes: a delivered event is not sent again.
    std::thread::sleep(Duration::from_millis(1500));
    let all = got.lock().unwrap().clone();
    assert_eq!(all.len(), delivered.len(), "{all:?}");
    assert_eq!(all.len(), 5, "4 ends, one of them tried twice: {all:?}");
    let first = &all[0];
    assert_eq!(first.answered, 500);
    let retried: Vec<&Received> = all[1..].iter().filter(|r| r.event == first.event).collect();
    assert_eq!(
        retried.len(),
        1,
        "the failed delivery came again, once: {all:?}"
    );
    assert_eq!(
        retried[0].body, first.body,
        "the same body (and event id) on a retry"
    );
    let mut per_event = BTreeMap::new();
    for r in all.iter().filter(|r| r.answered == 200) {
        *per_event.entry(r.event.clone()).or_insert(0) += 1;
    }
    assert!(per_event.values().all(|n| *n == 1), "{per_event:?}");

    // The bodies: one per fold, one for the array; the event id in the body is the header's.
    let bodies: Vec<Value> = all
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| {
            let b: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(b["event_id"], r.event.as_str());
            assert!(b["ended_at"].as_i64().unwrap() > 0);
            b
        })
        .collect();
    let find = |kind: &str, id: i64| {
        bodies
            .iter()
            .find(|b| b["kind"] == kind && b["id"] == id)
            .unwrap_or_else(|| panic!("no {kind} {id} in {bodies:?}"))
            .clone()
    };
    for id in &folds {
        let b = find("fold", *id);
        assert_eq!(b["state"], "done", "{b}");
        assert_eq!(b["outcome"]["kind"], "success", "{b}");
    }
    let a = find("array", array_id);
    assert_eq!(a["state"], "failed", "{a}");
    assert_eq!(
        a["outcome"],
        json!({"folds": 3, "done": 1, "failed": 2}),
        "{a}"
    );
    assert_eq!(find("fold", ann_fold)["state"], "done");

    // Signatures, checked by Python's hmac with each event's token's secret.
    let mut secrets = BTreeMap::new();
    for b in &bodies {
        let secret = if b["id"] == ann_fold && b["kind"] == "fold" {
            &ann_secret
        } else {
            &admin_secret
        };
        secrets.insert(b["event_id"].as_str().unwrap().to_string(), secret.clone());
    }
    assert_eq!(bad_signatures(&all, &secrets), Vec::<String>::new());

    // The record: the retried one took two attempts; ann sees only her own.
    let hooks = m.get("/webhooks")["webhooks"].as_array().unwrap().clone();
    assert_eq!(hooks.len(), 4, "{hooks:?}");
    assert!(hooks.iter().all(|h| h["state"] == "delivered"), "{hooks:?}");
    let twice = hooks
        .iter()
        .find(|h| h["event_id"] == first.event.as_str())
        .unwrap();
    assert_eq!(twice["attempts"], 2, "{twice}");
    let (_, mine) = m.request_as(&ann, "GET", "/webhooks", None);
    assert_eq!(mine["webhooks"].as_array().unwrap().len(), 1, "{mine}");
    let (status, _) = m.request_as(
        &ann,
        "GET",
        &format!("/webhooks?kind=fold&id={}", folds[0]),
        None,
    );
    assert_eq!(status, 200);

    // A private range not opened by --webhook-allow: 400 naming the field, nothing stored.
    let before = m.get("/folds")["folds"].as_array().unwrap().len();
    for (hook, code) in [
        ("http://10.1.2.3/hook", 400),
        ("http://169.254.169.254/latest", 400),
        ("ftp://example.com/x", 400),
        (&*format!("http://example.com/{}", "a".repeat(2048)), 413),
    ] {
        let (status, v) = m.request(
            "POST",
            "/folds",
            Some(json!({"command": ["true"], "webhook": hook})),
        );
        assert_eq!(status, code, "{hook}: {v}");
        assert!(message(&v).starts_with("webhook: "), "{v}");
    }
    let (status, v) = m.request(
        "POST",
        "/arrays",
        Some(json!({"spec": {"command": ["true"]}, "array": "0-1", "webhook": "http://192.168.0.1/"})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("webhook"), "{v}");
    assert_eq!(
        m.get("/folds")["folds"].as_array().unwrap().len(),
        before,
        "nothing stored"
    );
}

#[test]
fn loopback_is_refused_without_webhook_allow() {
    let m = Master::start(None);
    let (status, v) = m.request(
        "POST",
        "/folds",
        Some(json!({"command": ["true"], "webhook": "http://127.0.0.1:9/hook"})),
    );
    assert_eq!(status, 400, "{v}");
    let msg = message(&v);
    assert!(
        msg.starts_with("webhook: ") && msg.contains("loopback") && msg.contains("--webhook-allow"),
        "{msg}"
    );
    let out = m.cli(&["submit", "--webhook", "http://localhost:9/", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("webhook") && err.contains("loopback"), "{err}");
    assert_eq!(
        m.get("/folds")["folds"].as_array().unwrap().len(),
        0,
        "nothing stored"
    );
}

/// The delivery is kept by the store: a master killed (SIGKILL) while its receiver is down
/// delivers it after a restart, with the same event id.
#[test]
fn a_pending_delivery_survives_a_crash_of_the_master() {
    let mut m = Master::start_with(
        Some(FOUR_SLOTS),
        &[
            "--webhook-allow",
            "127.0.0.0/8",
            "--webhook-backoff",
            "200ms",
            "--webhook-max-backoff",
            "1s",
        ],
    );
    // A port with nothing listening (yet).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (status, v) = m.request(
        "POST",
        "/folds",
        Some(json!({"command": ["true"], "resources": {"cpus": 0.1, "memory": "16M"}, "webhook": url})),
    );
    assert_eq!(status, 201, "{v}");
    let fold = v["id"].as_i64().unwrap();
    // The fold ends; its delivery fails (connection refused) and is retried.
    let deadline = Instant::now() + Duration::from_secs(60);
    let hook = loop {
        let hooks = m.get(&format!("/webhooks?kind=fold&id={fold}"))["webhooks"].clone();
        let h = hooks[0].clone();
        if h["attempts"].as_i64().unwrap_or(0) >= 1 {
            break h;
        }
        assert!(Instant::now() < deadline, "no attempt: {h}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(hook["state"], "pending", "{hook}");
    assert!(
        hook["last_error"].as_str().unwrap().contains("error"),
        "{hook}"
    );
    m.kill9();
    // The receiver comes up, then the master again: the end is delivered.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            let mut event = String::new();
            let mut len = 0;
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("x-datarun-event:") {
                    event = v.trim().to_string();
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push(event);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    m.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "not delivered after the restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        *got.lock().unwrap(),
        vec![hook["event_id"].as_str().unwrap().to_string()]
    );
    let after = m.get(&format!("/webhooks?kind=fold&id={fold}"))["webhooks"][0].clone();
    assert_eq!(after["state"], "delivered", "{after}");
}

/// A batch's webhooks are bounded by distinct hosts (host and port), not URLs: 20 folds whose
/// webhooks differ only in their query are one host and are stored; 17 ports of one address
/// are 17 hosts and are refused, nothing stored.
#[test]
fn a_batch_names_at_most_16_webhook_hosts() {
    let m = Master::start_with(None, &["--webhook-allow", "127.0.0.1/32"]);
    let held =
        |hook: String| json!({"command": ["true"], "resources": {"cpus": 99999}, "webhook": hook});
    let one_host: Vec<Value> = (0..20)
        .map(|i| held(format!("http://127.0.0.1:9/hook?fold={i}")))
        .collect();
    let (status, v) = m.request("POST", "/folds/batch", Some(json!({"folds": one_host})));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["ids"].as_array().map(Vec::len), Some(20), "{v}");
    let before = m.get("/folds")["folds"].as_array().unwrap().len();
    let many: Vec<Value> = (1..=17)
        .map(|port| held(format!("http://127.0.0.1:{port}/hook")))
        .collect();
    let (status, v) = m.request("POST", "/folds/batch", Some(json!({"folds": many})));
    assert_eq!(status, 413, "{v}");
    assert!(
        message(&v).contains("17 distinct hosts is over the limit of 16"),
        "{v}"
    );
    assert_eq!(
        m.get("/folds")["folds"].as_array().unwrap().len(),
        before,
        "nothing stored"
    );
}
