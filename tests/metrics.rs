//! `GET /metrics` (README "Metrics"), parsed by a real OpenMetrics parser: the Python
//! `prometheus_client` package's (`openmetrics.parser`, strict: it checks the `# EOF`, the
//! types, the histograms' buckets against their counts), in a venv made once under the target
//! directory. Values are checked against the queue after known submissions: n done, m failed,
//! k held; the folds' histograms count the attempts that ran; the API request counters count
//! the requests made. Auth: admin tokens only, unless `serve --metrics-public`.

mod common;

use common::python::{run, target_dir};
use common::{sh, Master};
use serde_json::{json, Value};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const RUNNER: &str = "[[runner]]\nname = \"solo\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 3\ncpus = 2\nmemory = \"2G\"\nqueues = [\"default\"]\n";

/// The pinned parser.
const PARSER: &str = "prometheus-client==0.26.0";

/// A venv with `prometheus_client`, made once (a file lock keeps two tests from racing).
fn parser_python() -> PathBuf {
    let dir = target_dir().join("prom-parser-venv");
    let python = dir.join("bin/python");
    let stamp = dir.join("parser.stamp");
    let lock = std::fs::File::create(target_dir().join("prom-parser-venv.lock")).unwrap();
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(PARSER) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    run(
        Command::new(common::python3())
            .args(["-m", "venv"])
            .arg(&dir),
        "python3 -m venv (on Debian: apt-get install python3-venv)",
    );
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PARSER,
        ]),
        "pip install prometheus-client (needs PyPI)",
    );
    std::fs::write(&stamp, PARSER).unwrap();
    python
}

/// Parses the exposition with the OpenMetrics parser; one JSON row per sample:
/// `{family, type, name, labels, value}`. Panics (with the parser's message) when it does not
/// parse.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

fn parse(text: &str) -> Vec<Value> {
    let mut child = Command::new(parser_python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// GET /metrics with `token` (None: without one): (status, content type, body).
fn scrape(m: &Master, token: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", m.url))
        .timeout(Duration::from_secs(20));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().unwrap())
}

/// The value of the sample `name` whose labels include `labels` (None: no such sample).
fn value(samples: &[Value], name: &str, labels: Value) -> Option<f64> {
    let want = labels.as_object().unwrap();
    samples
        .iter()
        .find(|s| s["name"] == name && want.iter().all(|(k, v)| &s["labels"][k] == v))
        .map(|s| s["value"].as_f64().unwrap())
}

fn must(samples: &[Value], name: &str, labels: Value) -> f64 {
    value(samples, name, labels.clone())
        .unwrap_or_else(|| panic!("no sample {name} {labels} in /metrics"))
}

#[test]
fn metrics_agree_with_the_queue() {
    let m = Master::start(Some(RUNNER));
    let mut failing = sh("exit 3");
    failing["max_retries"] = json!(0);
    let mut too_big = sh("true");
    too_big["resources"]["memory"] = json!("4G");
    let (done, failed, held) = (4, 2, 1);
    let mut folds = vec![sh("true"); done];
    folds.extend(vec![failing; failed]);
    folds.extend(vec![too_big; held]);
    let ids = m.submit(folds);
    let ended = m.wait_all(&ids, Duration::from_secs(30));
    let states: Vec<&str> = ended.iter().map(|f| f["state"].as_str().unwrap()).collect();
    assert_eq!(states.iter().filter(|s| **s == "done").count(), done);
    assert_eq!(states.iter().filter(|s| **s == "failed").count(), failed);
    assert_eq!(states.iter().filter(|s| **s == "held").count(), held);
    // Known API requests: 3 queue listings, 2 folds that do not exist, 1 route that does not.
    for _ in 0..3 {
        m.get("/queue");
    }
    for id in [987_654, 987_655] {
        assert_eq!(m.request("GET", &format!("/folds/{id}"), None).0, 404);
    }
    assert_eq!(m.request("GET", "/no/such/route", None).0, 404);
    // A method of the client's own making is not a label value.
    assert_eq!(m.request("BREW", "/queue", None).0, 405);

    let (status, ctype, text) = scrape(&m, Some(&m.token));
    assert_eq!(status, 200, "{text}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let s = parse(&text);

    // Folds by queue and state, from the store's counts.
    let folds = |state: &str| {
        must(
            &s,
            "datarun_folds",
            json!({"queue": "default", "state": state}),
        )
    };
    assert_eq!(folds("done"), done as f64);
    assert_eq!(folds("failed"), failed as f64);
    assert_eq!(folds("held"), held as f64);
    assert_eq!(folds("idle"), 0.0);
    assert_eq!(folds("running"), 0.0);
    // Submissions and completions.
    let submitted =
        |state: &str| must(&s, "datarun_folds_submitted_total", json!({"state": state}));
    assert_eq!(submitted("idle"), (done + failed) as f64);
    assert_eq!(submitted("held"), held as f64);
    let results = |outcome: &str, state: &str| {
        value(
            &s,
            "datarun_fold_results_total",
            json!({"outcome": outcome, "state": state}),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(results("success", "done"), done as f64);
    assert_eq!(results("exit_code", "failed"), failed as f64);
    let all_results: f64 = s
        .iter()
        .filter(|x| x["name"] == "datarun_fold_results_total")
        .map(|x| x["value"].as_f64().unwrap())
        .sum();
    assert_eq!(all_results, (done + failed) as f64, "no other result");
    // The folds' distributions count every attempt that ran; the +Inf bucket holds them all.
    for h in [
        "datarun_fold_wall_seconds",
        "datarun_fold_cpu_seconds",
        "datarun_fold_peak_memory_bytes",
    ] {
        assert_eq!(
            must(&s, &format!("{h}_count"), json!({})),
            (done + failed) as f64,
            "{h}"
        );
        assert_eq!(
            must(&s, &format!("{h}_bucket"), json!({"le": "+Inf"})),
            (done + failed) as f64,
            "{h}"
        );
    }
    assert!(must(&s, "datarun_fold_peak_memory_bytes_sum", json!({})) > 0.0);
    // Scheduling: every fold that ran was placed once, over at least one cycle.
    assert_eq!(
        must(&s, "datarun_schedule_decisions_sum", json!({})),
        (done + failed) as f64
    );
    assert!(must(&s, "datarun_schedule_cycle_seconds_count", json!({})) >= 1.0);
    // The runner from the master's view.
    assert_eq!(
        must(&s, "datarun_runner_slots", json!({"runner": "solo"})),
        3.0
    );
    assert_eq!(
        must(&s, "datarun_runner_slots_used", json!({"runner": "solo"})),
        0.0
    );
    assert_eq!(
        must(
            &s,
            "datarun_runner_state",
            json!({"runner": "solo", "state": "ready"})
        ),
        1.0
    );
    assert_eq!(
        must(
            &s,
            "datarun_runner_state",
            json!({"runner": "solo", "state": "connecting"})
        ),
        0.0
    );
    // Store operations, named by the store method.
    assert!(
        must(
            &s,
            "datarun_store_operation_seconds_count",
            json!({"kind": "write", "op": "submit"})
        ) >= 1.0
    );
    assert!(
        must(
            &s,
            "datarun_store_operation_seconds_count",
            json!({"kind": "fsync", "op": "group"})
        ) >= 1.0
    );
    assert!(
        must(
            &s,
            "datarun_store_operation_seconds_count",
            json!({"kind": "read", "op": "fold_state_counts"})
        ) >= 1.0
    );
    // API requests by route template and status (never the raw path).
    let http = |method: &str, route: &str, status: &str| {
        must(
            &s,
            "datarun_http_requests_total",
            json!({"method": method, "route": route, "status": status}),
        )
    };
    assert_eq!(http("GET", "/api/v1/queue", "200"), 3.0);
    assert_eq!(http("GET", "/api/v1/folds/{id}", "404"), 2.0);
    assert_eq!(http("POST", "/api/v1/folds/batch", "201"), 1.0);
    assert!(http("GET", "/api/v1/folds/{id}", "200") >= ids.len() as f64);
    assert!(http("GET", "unmatched", "404") >= 1.0);
    assert!(
        !text.contains("987654") && !text.contains("/no/such/route"),
        "raw paths leak into labels"
    );
    let brewed: f64 = s
        .iter()
        .filter(|x| {
            x["name"] == "datarun_http_requests_total"
                && x["labels"]["method"] == "other"
                && x["labels"]["status"] == "405"
        })
        .map(|x| x["value"].as_f64().unwrap())
        .sum();
    assert_eq!(brewed, 1.0, "{text}");
    assert!(!text.contains("BREW"), "a raw method in labels");
    // The three listings and the BREW: a 405 still matched the route.
    assert_eq!(http("other", "/api/v1/queue", "405"), 1.0);
    assert_eq!(
        must(
            &s,
            "datarun_http_request_seconds_count",
            json!({"route": "/api/v1/queue"})
        ),
        4.0
    );
    // Nothing per owner, for anyone.
    assert!(
        s.iter().all(|x| x["labels"].get("owner").is_none()),
        "an owner label"
    );

    // A second scrape counts the first one.
    let (_, _, again) = scrape(&m, Some(&m.token));
    let s2 = parse(&again);
    assert!(
        must(
            &s2,
            "datarun_http_requests_total",
            json!({"route": "/metrics", "status": "200"})
        ) >= 1.0
    );
}

#[test]
fn metrics_take_an_admin_token_unless_public() {
    let m = Master::start(Some(RUNNER));
    let (status, _, body) = scrape(&m, None);
    assert_eq!(status, 401, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--metrics-public"),
        "{v}"
    );
    let (status, _, body) = scrape(&m, Some("not-a-token"));
    assert_eq!(status, 401, "{body}");
    let alice = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let (status, _, body) = scrape(&m, Some(&alice));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not an admin"), "{body}");
    assert_eq!(scrape(&m, Some(&m.token)).0, 200);

    let public = Master::start_with(Some(RUNNER), &["--metrics-public"]);
    let (status, _, text) = scrape(&public, None);
    assert_eq!(status, 200, "{text}");
    let s = parse(&text);
    assert_eq!(
        must(&s, "datarun_runner_slots", json!({"runner": "solo"})),
        3.0
    );
}

/// Tenants name queues: 100 queue names give `datarun_folds` at most `QUEUE_SERIES` queue
/// labels, the inventory's queue among them however few its folds, the rest summed as
/// `(other)`; every fold is still counted once.
#[test]
fn queue_series_are_bounded() {
    let m = Master::start(Some(RUNNER));
    let ids = m.submit(vec![sh("true")]);
    m.wait_all(&ids, Duration::from_secs(30));
    // No runner serves these queues: each fold is held as it is stored.
    let named: Vec<Value> = (0..100)
        .map(|i| {
            let mut f = sh("true");
            f["queue"] = json!(format!("t{i:03}"));
            f
        })
        .collect();
    m.submit(named);
    let (status, _, text) = scrape(&m, Some(&m.token));
    assert_eq!(status, 200, "{text}");
    let s = parse(&text);
    let folds: Vec<&Value> = s.iter().filter(|x| x["name"] == "datarun_folds").collect();
    let queues: std::collections::BTreeSet<&str> = folds
        .iter()
        .map(|x| x["labels"]["queue"].as_str().unwrap())
        .collect();
    assert_eq!(queues.len(), datarun::metrics::QUEUE_SERIES, "{queues:?}");
    assert!(queues.contains("default"), "{queues:?}");
    assert!(
        queues.contains(datarun::metrics::OTHER_QUEUES),
        "{queues:?}"
    );
    let held: f64 = folds
        .iter()
        .filter(|x| x["labels"]["state"] == "held")
        .map(|x| x["value"].as_f64().unwrap())
        .sum();
    assert_eq!(held, 100.0);
    assert_eq!(
        must(
            &s,
            "datarun_folds",
            json!({"queue": "default", "state": "done"})
        ),
        1.0
    );
}
