//! Hostile input (issue 12, items 4 and 6): every oversized or malformed request answers its
//! status with a JSON error that names the field, and changes nothing; malformed inventories
//! name file, line and key; listings page without skipping; rates are limited per token.
//!
//! To extend: add a row to `requests()` (a request, the status, a piece of the message) or to
//! `inventories()` (a file, the `file:line: key` it must be refused with). Every request row
//! is checked against a snapshot of the database (folds, blobs, datasets, submissions, queue
//! counts) taken before it.

mod common;

use base64::Engine;
use common::{Master, BIN};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fold nobody can run (no runner has 99,999 cpus): stored held, it never changes.
fn held_spec() -> Value {
    json!({"command": ["true"], "resources": {"cpus": 99999}})
}

fn spec_with(extra: Value) -> Value {
    let mut spec = json!({"command": ["true"]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

/// One request of the table: what is sent and what must come back.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    /// A piece of the error message (it names the field and the limit).
    needle: String,
}

fn case(name: &'static str, method: &'static str, path: &str, body: Option<Value>) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        content_type: "application/json",
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        status: 0,
        needle: String::new(),
    }
}

impl Case {
    fn answers(mut self, status: u16, needle: &str) -> Case {
        self.status = status;
        self.needle = needle.to_string();
        self
    }
    fn raw(mut self, content_type: &'static str, body: Vec<u8>) -> Case {
        self.content_type = content_type;
        self.body = body;
        self
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// b64(zlib(`n` zero bytes)), compressed in chunks (1 GiB → about 1 MB).
fn zlib_zeros(n: usize) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 16 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        z.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    b64(&z.finish().unwrap())
}

const MAX_BODY: usize = 24 << 20;

/// The table. `held` is a fold that exists (for routes on a fold).
fn requests(held: i64) -> Vec<Case> {
    let kib = |n: usize| "x".repeat(n << 10);
    let input =
        |i: usize, len: usize| json!({"name": format!("{i:0>len$}"), "sha256": "a".repeat(64)});
    let env = |n: usize, size: usize| -> Value {
        (0..n)
            .map(|i| (format!("V{i}"), json!(kib(size))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let submission = |extra: Value| {
        let mut body = json!({"dataset_id": 1, "name": "s", "files": {}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    vec![
        // Fold specs: each size limit names its field and its limit (413).
        case("env in all", "POST", "/folds", Some(spec_with(json!({"env": env(4, 30)}))))
            .answers(413, "env: 120 KiB is over the limit of 64 KiB"),
        case("one env value", "POST", "/folds", Some(spec_with(json!({"env": {"BIG": kib(33)}}))))
            .answers(413, "env: BIG: 33 KiB is over the limit of 32 KiB"),
        case("env variables", "POST", "/folds", Some(spec_with(json!({"env": (0..1100).map(|i| (format!("V{i}"), json!(""))).collect::<serde_json::Map<_, _>>()}))))
            .answers(413, "env: 1100 variables is over the limit of 1024"),
        case("command bytes", "POST", "/folds", Some(json!({"command": ["sh", kib(70)]})))
            .answers(413, "command: 70 KiB is over the limit of 64 KiB"),
        case("command arguments", "POST", "/folds", Some(json!({"command": vec!["x"; 5000]})))
            .answers(413, "command: 5000 arguments is over the limit of 4096"),
        case("inputs", "POST", "/folds", Some(spec_with(json!({"inputs": (0..1100).map(|i| input(i, 8)).collect::<Vec<_>>()}))))
            .answers(413, "inputs: 1100 inputs is over the limit of 1024"),
        case("requirements", "POST", "/folds", Some(spec_with(json!({"requirements": "1 == 1 && ".repeat(600)}))))
            .answers(413, "requirements: 5.9 KiB is over the limit of 4 KiB"),
        case("whole spec", "POST", "/folds", Some(spec_with(json!({"inputs": (0..900).map(|i| input(i, 250)).collect::<Vec<_>>()}))))
            .answers(413, "the fold spec: "),
        case("spec body", "POST", "/folds", Some(spec_with(json!({"env": {"A": "x".repeat(3 << 20)}}))))
            .answers(413, "POST /folds: 1 MiB"),
        case("batch size", "POST", "/folds/batch", Some(json!({"folds": vec![json!({"command": ["true"]}); 10_001]})))
            .answers(413, "folds: 10001 folds is over the limit of 10000"),
        case("one fold of a batch", "POST", "/folds/batch", Some(json!({"folds": [held_spec(), held_spec(), spec_with(json!({"env": env(3, 30)}))]})))
            .answers(413, "fold 2: env: 90 KiB"),
        // Values that would not read back, or would overflow a runner's clock.
        case("memory 2^63", "POST", "/folds", Some(spec_with(json!({"resources": {"memory": "8388608T"}}))))
            .answers(400, "resources.memory"),
        case("memory beyond any machine", "POST", "/folds", Some(spec_with(json!({"resources": {"memory": "1048576T"}}))))
            .answers(400, "resources.memory: 1048576T is beyond any machine (at most 1024T)"),
        case("time limit 1e20 s", "POST", "/folds", Some(spec_with(json!({"hard_time_limit": "1e20"}))))
            .answers(400, "hard_time_limit"),
        case("time limit as a number", "POST", "/folds", Some(spec_with(json!({"soft_time_limit": 1e19}))))
            .answers(400, "soft_time_limit"),
        case("time limit of years", "POST", "/folds/batch", Some(json!({"folds": [spec_with(json!({"hard_time_limit": "400days"}))]})))
            .answers(400, "hard_time_limit: at most 366 days"),
        case("array time limit", "POST", "/arrays", Some(json!({"array": "0-1", "spec": spec_with(json!({"hard_time_limit": "1e20"}))})))
            .answers(400, "hard_time_limit"),
        case("wait 1e20 s", "GET", "/events?timeout=1e20", None).answers(400, "timeout"),
        // Bodies without files are small, whatever --max-body allows uploads.
        case("array body", "POST", "/arrays", Some(json!({"array": "0-1", "spec": spec_with(json!({"env": {"A": "x".repeat(3 << 20)}}))})))
            .answers(413, "POST /folds: 1 MiB"),
        case("bulk body", "POST", "/folds/bulk/hold", Some(json!({"ids": vec![1; 600_000]})))
            .answers(413, "POST /folds: 1 MiB"),
        case("scores body", "POST", "/scores", Some(json!({"score_types": ["f1"], "y_true": vec!["0"; 3_000_000]})))
            .answers(413, "POST /scores: 8 MiB"),
        case("scores rows", "POST", "/scores", Some(json!({"score_types": ["f1"], "y_true": vec![0; 1_000_001], "y_pred": [0]})))
            .answers(413, "y_true: 1000001 rows is over the limit of 1000000"),
        case("webhook URLs", "POST", "/folds/batch", Some(json!({"folds": (0..17).map(|i| {
            let mut f = held_spec();
            f["webhook"] = json!(format!("http://8.8.8.{i}/hook"));
            f
        }).collect::<Vec<_>>()})))
            .answers(413, "webhook: 17 distinct hosts is over the limit of 16"),
        // Malformed specs: 400 naming the field.
        case("env name", "POST", "/folds", Some(spec_with(json!({"env": {"A=B": "1"}}))))
            .answers(400, "env: \"A=B\""),
        case("no command", "POST", "/folds", Some(json!({"command": []}))).answers(400, "command"),
        case("not JSON", "POST", "/folds", None)
            .raw("application/json", b"{not json".to_vec())
            .answers(400, "JSON"),
        case("content type", "POST", "/folds", None)
            .raw("text/plain", held_spec().to_string().into_bytes())
            .answers(415, "Content-Type: application/json"),
        case("empty batch", "POST", "/folds/batch", Some(json!({"folds": []}))).answers(400, "folds"),
        // `count`: copies of each spec, bounded as folds sent one by one are.
        case("batch count", "POST", "/folds/batch", Some(json!({"folds": [held_spec(), held_spec()], "count": 5001})))
            .answers(413, "folds: 10002 folds is over the limit of 10000"),
        case("batch copies", "POST", "/folds/batch", Some(json!({"folds": [spec_with(json!({"env": env(2, 30)}))], "count": 2000})))
            .answers(413, "count: the folds' specs: "),
        case("zero count", "POST", "/folds/batch", Some(json!({"folds": [held_spec()], "count": 0})))
            .answers(400, "count: at least 1"),
        case("negative count", "POST", "/folds/batch", Some(json!({"folds": [held_spec()], "count": -1})))
            .answers(400, "count"),
        // Other bodies that store text.
        case("hold reason", "POST", &format!("/folds/{held}/hold"), Some(json!({"reason": kib(2)})))
            .answers(413, "reason: 2 KiB is over the limit of 1 KiB"),
        case("target column", "POST", "/datasets", Some(json!({"name": "d", "csv": b64(b"x,y\n1,2\n"), "target_column": kib(2)})))
            .answers(413, "target_column: 2 KiB is over the limit of 1 KiB"),
        case("table cells", "POST", "/datasets", Some(json!({"name": "d", "csv": b64(&[b"x,y\n".as_slice(), &b",\n".repeat(2_500_001)].concat()), "target_column": "y"})))
            .answers(400, "csv: line 2500002: the table has more than 5000000 cells"),
        case("workflow elements", "POST", "/datasets", Some(json!({"name": "d", "csv": b64(b"x,y\n1,2\n"), "target_column": "y", "workflow_elements": vec!["e"; 100]})))
            .answers(413, "workflow_elements: 100 names is over the limit of 64"),
        case("cv folds", "POST", "/submissions", Some(submission(json!({"cv": {"k": 5000}}))))
            .answers(413, "cv.k: 5000 folds is over the limit of 1000"),
        case("client id", "POST", "/submissions", Some(submission(json!({"folds": [{"train_is": [0], "test_is": [1], "client_id": kib(2)}]}))))
            .answers(413, "folds[0].client_id: 2 KiB"),
        case("submission name", "POST", "/submissions", Some(submission(json!({"name": "a b", "cv": {"k": 2}}))))
            .answers(400, "name: \"a b\""),
        case("upload", "POST", "/blobs", None)
            .raw("application/octet-stream", vec![7u8; MAX_BODY + 1])
            .answers(413, "serve --max-body"),
        // Pages and paths.
        case("page size", "GET", "/folds?limit=300000", None)
            .answers(400, "limit: 300000 is over the maximum page of 1000"),
        case("page of submissions", "GET", "/submissions?limit=5000", None)
            .answers(400, "maximum page of 1000"),
        case("page of datasets", "GET", "/datasets?limit=0", None).answers(400, "limit: at least 1"),
        case("feed page", "POST", "/results/new", Some(json!({"limit": 5000})))
            .answers(400, "maximum page of 1000"),
        case("limit not a number", "GET", "/folds?limit=x", None).answers(400, "query: limit"),
        case("two cursors", "GET", "/folds?since=1&after=1", None).answers(400, "not both"),
        case("id not a number", "GET", "/folds/abc", None)
            .answers(400, "bad path: \"abc\" is not a number"),
        case("method", "DELETE", "/folds/1", None)
            .answers(405, "DELETE is not allowed on /api/v1/folds/1 (allowed: GET,HEAD)"),
        case("no endpoint", "GET", "/no/such/thing", None).answers(404, "no such endpoint"),
        // /runapp/: the original's {"detail"} or {"field": [..]} shape.
        case("zlib bomb", "POST", "/runapp/rawdata/", Some(json!({"name": "bomb", "target_column": "y", "workflow_elements": "classifier", "files": {"bomb.csv": zlib_zeros(1 << 30)}})))
            .answers(413, "bomb.csv: inflates to more than 24 MiB"),
        case("bombs add up", "POST", "/runapp/rawdata/", Some(json!({"name": "bombs", "target_column": "y", "workflow_elements": "classifier", "files": {"a.csv": zlib_zeros(16 << 20), "b.py": zlib_zeros(16 << 20)}})))
            .answers(413, "b.py: inflates to more than 8 MiB"),
        case("indices text", "POST", "/runapp/submissionfold/", Some(json!({"databoard_sf_id": 1, "databoard_s_id": 1, "train_is": "A".repeat(17 << 20), "test_is": "AA"})))
            .answers(413, "train_is: 17 MiB is over the limit of 16 MiB"),
        case("runapp name", "POST", "/runapp/rawdata/", Some(json!({"name": kib(2), "target_column": "y", "workflow_elements": "classifier", "files": {}})))
            .answers(413, "name: 2 KiB"),
        case("runapp path", "GET", "/runapp/nothing/", None).answers(404, "no such endpoint"),
    ]
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    folds: i64,
    blobs: i64,
    datasets: i64,
    submissions: i64,
    /// The newest change of any fold.
    seq: i64,
    queue: Value,
}

fn snapshot(m: &Master) -> Snapshot {
    let db = rusqlite::Connection::open_with_flags(
        m.data_dir().join("datarun.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    Snapshot {
        folds: count("folds"),
        blobs: count("blobs"),
        datasets: count("datasets"),
        submissions: count("submissions"),
        seq: db
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM folds", [], |r| r.get(0))
            .unwrap(),
        queue: m.get("/queue")["counts"].clone(),
    }
}

fn send(m: &Master, c: &Case) -> (u16, Value) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let (url, auth) = if c.path.starts_with("/runapp/") {
        let basic = b64(format!("databoard:{}", m.token).as_bytes());
        (format!("{}{}", m.url, c.path), format!("Basic {basic}"))
    } else {
        (
            format!("{}/api/v1{}", m.url, c.path),
            format!("Bearer {}", m.token),
        )
    };
    let mut req = http
        .request(c.method.parse().unwrap(), url)
        .header("authorization", auth);
    if !c.body.is_empty() {
        req = req
            .header("content-type", c.content_type)
            .body(c.body.clone());
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let status = resp.status().as_u16();
    let json = resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json");
    let text = resp.text().unwrap();
    assert!(json, "{}: the answer is not JSON: {text}", c.name);
    (status, serde_json::from_str(&text).unwrap())
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn oversized_and_malformed_requests_answer_json_naming_the_field_and_change_nothing() {
    let max_body = MAX_BODY.to_string();
    let m = Master::start_with(None, &["--max-body", &max_body, "--max-inflated", "24M"]);
    let held = m.submit(vec![held_spec()])[0];
    assert_eq!(m.fold(held)["fold"]["state"], "held");
    let mut failures = Vec::new();
    for c in requests(held) {
        let before = snapshot(&m);
        let (status, v) = send(&m, &c);
        let message = if c.path.starts_with("/runapp/") {
            // {"detail": "..."} or a DRF field map {"files": ["..."]}.
            assert!(v.is_object(), "{}: {v}", c.name);
            v.to_string()
        } else {
            assert!(v["error"]["code"].is_string(), "{}: {v}", c.name);
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        if status != c.status || !message.contains(&c.needle) {
            failures.push(format!(
                "{}: expected {} with {:?}, got {status}: {message}",
                c.name, c.status, c.needle
            ));
        }
        assert_eq!(snapshot(&m), before, "{}: something changed", c.name);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The 1 GiB zlib bomb was refused while inflating: the master never held it.
    let hwm = vm_hwm_kib(m.child.as_ref().unwrap().id());
    eprintln!("master VmHWM after the hostile requests: {} MiB", hwm >> 10);
    assert!(hwm < 300 << 10, "master VmHWM {} MiB", hwm >> 10);
}

/// Malformed inventories: (what, file text, the `file:line: key` it is refused with).
fn inventories() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("unknown key", "[[runner]]\nname = \"a\"\ntransport = \"local\"\nslots = 2\ncolour = \"red\"\n", "runners.toml:5: runner.colour: unknown key"),
        ("duplicate name", "[[runner]]\nname = \"a\"\ntransport = \"local\"\n\n[[runner]]\nname = \"a\"\ntransport = \"local\"\n", "runners.toml:6: runner.name: duplicate runner name \"a\""),
        ("slots", "[[runner]]\nname = \"a\"\ntransport = \"local\"\nslots = -1\n", "runners.toml:4: runner.slots"),
        ("size", "[[runner]]\nname = \"a\"\ntransport = \"local\"\nmemory = \"lots\"\n", "runners.toml:4: runner.memory: bad size"),
        ("soft after hard", "[[runner]]\nname = \"a\"\ntransport = \"local\"\nsoft_time_limit = \"10m\"\nhard_time_limit = \"5m\"\n", "runners.toml:1: runner.soft_time_limit"),
        ("huge pool", "[[runner]]\nname = \"pool\"\naddress = \"10.0.0.0/8\"\n", "runners.toml:3: runner.address: 10.0.0.0/8 would expand to 16777214 runners"),
        ("table, not array", "[runner]\nname = \"a\"\n", "runners.toml:1: runner: expected [[runner]] tables"),
        ("syntax", "[[runner]]\nname = \"a\n", "runners.toml:2: syntax: not valid TOML"),
        ("requirements", "[[runner]]\nname = \"a\"\ntransport = \"local\"\nrequirements = \"owner ==\"\n", "runners.toml:4: runner.requirements: column 9"),
        ("no runner", "[defaults]\nslots = 2\n", "runners.toml:1: runner: no runners"),
        ("name", "[[runner]]\nname = \"a b\"\ntransport = \"local\"\n", "runners.toml:2: runner.name: \"a b\" is not a valid runner name"),
        ("port", "[[runner]]\nname = \"a\"\naddress = \"host:99999\"\n", "runners.toml:3: runner.address: port \"99999\""),
    ]
}

#[test]
fn malformed_inventories_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runners.toml");
    for (what, text, needle) in inventories() {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .args(["inventory", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
    }
}

/// `inventory check` is linear: 50,000 runners (20,000 took 46 s before, quadratic).
#[test]
fn a_large_inventory_is_checked_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runners.toml");
    let mut text = String::from("[defaults]\nslots = 2\nexecutor = \"process\"\n");
    for i in 0..50_000 {
        text.push_str(&format!(
            "\n[[runner]]\nname = \"r{i}\"\naddress = \"10.{}.{}.{}\"\nlabels = [\"a\", \"b\"]\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    std::fs::write(&file, text).unwrap();
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["inventory", "check"])
        .arg(&file)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// 2,500 folds (more than two pages): `since` paging never skips one, `queue status --all`
/// lists them all, `queue wait` finds the last by id.
#[test]
fn listings_page_without_skipping_and_wait_finds_any_fold() {
    let m = Master::start(None);
    let ids = m.submit(vec![held_spec(); 2500]);
    // A page of "changed since 0" ends at its last row's seq, so the next page goes on.
    let page = m.get("/folds?since=0&limit=5");
    let rows = page["folds"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(page["seq"], rows[4]["seq"], "{}", page["seq"]);
    assert_eq!(page["next"], rows[4]["seq"]);
    let (mut seen, mut since) = (Vec::new(), 0);
    loop {
        let p = m.get(&format!("/folds?since={since}&limit=1000"));
        seen.extend(
            p["folds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_i64().unwrap()),
        );
        since = p["seq"].as_i64().unwrap();
        if p["next"].is_null() {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ids);
    // The default page is 500; id order pages with `after`.
    let p = m.get("/folds");
    assert_eq!(p["folds"].as_array().unwrap().len(), 500);
    assert_eq!(p["next"], ids[499]);
    let p = m.get(&format!("/folds?after={}", ids[2400]));
    assert_eq!(p["folds"].as_array().unwrap().len(), 99);
    assert!(p["next"].is_null());
    // The CLI follows the pages.
    let out = m.cli_ok(&["queue", "status", "--all", "--json"]);
    let all: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(all.len(), 2500);
    let table = m.cli_ok(&["queue", "status", "--all", "--state", "held"]);
    assert_eq!(table.lines().count(), 2501, "a header and every fold");
    // `queue wait` of the last fold (held: exit 1) and of one that does not exist.
    let last = ids[2499].to_string();
    let out = m.cli(&["queue", "wait", &last, "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{last} held")), "{err}");
    let out = m.cli(&["queue", "wait", "999999", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(3), "not found");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fold 999999 does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `count` in a batch: each spec becomes that many folds, in order, each held as it would be
/// alone; the CLI's `submit --count` sends the spec once.
#[test]
fn a_batch_count_submits_each_spec_that_many_times_in_order() {
    let m = Master::start(None);
    let other = json!({"command": ["false"], "resources": {"cpus": 99999}});
    let (status, v) = m.request(
        "POST",
        "/folds/batch",
        Some(json!({"folds": [held_spec(), other], "count": 3})),
    );
    assert_eq!(status, 201, "{v}");
    let ids = common::ints(&v["ids"]);
    assert_eq!(ids.len(), 6, "{v}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let commands: Vec<Value> = ids
        .iter()
        .map(|id| m.fold(*id)["fold"]["spec"]["command"][0].clone())
        .collect();
    assert_eq!(
        commands,
        ["true", "true", "true", "false", "false", "false"].map(|c| json!(c))
    );
    let held: Vec<i64> = v["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_i64().unwrap())
        .collect();
    assert_eq!(held, ids, "every copy is held, as its spec alone would be");
    let out = m.cli_ok(&["submit", "--cpus", "99999", "--count", "4", "--", "true"]);
    let printed: Vec<i64> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(printed.len(), 4, "{out}");
    assert_eq!(printed[0], ids[5] + 1);
}

/// `queue wait` on a fold that ends while it waits, followed by "changed since".
#[test]
fn wait_follows_changes_after_looking_folds_up() {
    let m = Master::start(None);
    let ids = m.submit(vec![common::sh("sleep 1"), common::sh("exit 3")]);
    let a = ids[0].to_string();
    let out = m.cli(&["queue", "wait", &a, "--timeout", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = ids[1].to_string();
    let out = m.cli(&["queue", "wait", &a, &b, "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{b} failed")));
}

/// A client command whose stdout is a pipe nobody reads ends quietly (no panic, not 101),
/// killed by SIGPIPE as any Unix tool; `runners status --json` keeps `inventory_error`.
#[test]
fn client_commands_end_quietly_on_a_closed_pipe() {
    use std::os::unix::process::ExitStatusExt;
    let m = Master::start(None);
    let id = m.submit(vec![held_spec()])[0].to_string();
    for args in [
        vec!["fold", "show", id.as_str()],
        vec!["queue", "status", "--all"],
        vec!["runners", "status", "--json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // closed before the command writes
        let out = Command::new(BIN)
            .args(&args)
            .env("DATARUN_DATA_DIR", m.data_dir())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
    let v: Value = serde_json::from_str(&m.cli_ok(&["runners", "status", "--json"])).unwrap();
    assert!(
        v.as_object().unwrap().contains_key("inventory_error"),
        "{v}"
    );
    assert!(
        v["runners"].as_array().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
}

/// Per-token rate limits: the burst, then 429 with Retry-After (JSON, both APIs); admin
/// tokens exempt; the bucket refills.
#[test]
fn a_token_over_its_rate_answers_429_with_retry_after() {
    let m = Master::start_with(None, &["--rate-limit", "2/s", "--rate-burst", "5"]);
    let ann = m.cli_ok(&["token", "create", "ann"]).trim().to_string();
    let http = reqwest::blocking::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("{}/api/v1{path}", m.url))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    for i in 0..5 {
        assert_eq!(get("/queue", &ann).status().as_u16(), 200, "request {i}");
    }
    let resp = get("/queue", &ann);
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let v: Value = resp.json().unwrap();
    assert_eq!(v["error"]["code"], "too_many_requests");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("ann"),
        "{v}"
    );
    // /runapp/ answers as DRF's throttling did.
    let resp = http
        .get(format!("{}/runapp/rawdata/", m.url))
        .basic_auth("databoard", Some(&ann))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().unwrap();
    assert!(v["detail"].as_str().unwrap().contains("throttled"), "{v}");
    // The admin token is not limited.
    for _ in 0..20 {
        assert_eq!(get("/queue", &m.token).status().as_u16(), 200);
    }
    // After Retry-After, ann may go on.
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(get("/queue", &ann).status().as_u16(), 200);
    // Over the limit, the CLI waits as Retry-After says instead of failing.
    while get("/queue", &ann).status().as_u16() == 200 {}
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["queue", "status"])
        .env("DATARUN_SERVER", &m.url)
        .env("DATARUN_TOKEN", &ann)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}
