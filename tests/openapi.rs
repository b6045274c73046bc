//! The OpenAPI document (issue 15 item 4) against a real master: `GET /api/v1/openapi.json`
//! answers without a token; it names every route the router serves with the methods the
//! router takes (the paths from `datarun::api::route_paths`, the router's own table, the
//! methods probed over HTTP); it is a valid OpenAPI document (openapi-spec-validator); and
//! schemathesis, from PyPI in a venv of its own, drives every documented operation with
//! generated inputs, good and bad, against a master holding folds, a dataset and a split:
//! no answer may be a 5xx, and every answer must be one the document describes (status,
//! content type, JSON shape). A missing python3/venv/PyPI fails the test.

mod common;

use common::python::{run, venv_with};
use common::Master;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

/// The pinned tools (`pip install` arguments; the venv is made again when these change).
const TOOLS: [&str; 2] = ["schemathesis==4.32.5", "openapi-spec-validator==0.9.0"];

/// The methods probed on every path.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn document(m: &Master) -> Value {
    let resp = reqwest::blocking::get(format!("{}/api/v1/openapi.json", m.url)).unwrap();
    assert_eq!(resp.status(), 200, "the document answers without a token");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    resp.json().unwrap()
}

/// The path as the document writes it: `{*rest}` is `{rest}`.
fn doc_path(route: &str) -> String {
    format!("/api/v1{}", route.replace("{*", "{"))
}

/// A concrete URL path for a route: every parameter `1`.
fn concrete(route: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in route.chars() {
        match c {
            '{' => inside = true,
            '}' => {
                inside = false;
                out.push('1');
            }
            _ if inside => {}
            _ => out.push(c),
        }
    }
    format!("/api/v1{out}")
}

#[test]
fn the_document_names_every_route_of_the_router_with_its_methods_and_no_other() {
    let m = Master::start(None);
    let doc = document(&m);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.to_uppercase().as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect();
    // What the router takes, asked over HTTP (on an empty master, so that nothing exists to
    // change): a route's method answers anything but 405, and never "no such endpoint".
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut routed = BTreeMap::new();
    for route in datarun::api::route_paths() {
        // `timeout`: `GET /events` answers at once.
        let url = format!("{}{}?timeout=0s", m.url, concrete(route));
        let mut methods = BTreeSet::new();
        for method in METHODS {
            let resp = http
                .request(method.parse().unwrap(), &url)
                .bearer_auth(&m.token)
                .send()
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().unwrap();
            assert!(
                status < 500 && !body.contains("no such endpoint"),
                "{method} {url}: {status} {body}"
            );
            if status != 405 {
                methods.insert(method.to_string());
            }
        }
        assert!(!methods.is_empty(), "{route}: no method answers");
        routed.insert(doc_path(route), methods);
    }
    assert_eq!(
        routed, documented,
        "the router (left) and the OpenAPI document (right) disagree: add the route's declaration in src/api/openapi.rs"
    );
    // Every operation but the public ones asks for the token.
    let public = ["/api/v1/health", "/api/v1/openapi.json"];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let open = op["security"] == json!([{}]);
            assert_eq!(open, public.contains(&path.as_str()), "{method} {path}");
            if !open {
                assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
            }
        }
    }
}

/// A master with data for the fuzzer to find: done folds with logs and outputs, a held fold,
/// an array, a dataset with a split. Then the runners are drained, so that the folds the
/// fuzzer submits (commands made of random text) never run. Also the ids that exist.
fn master_with_data() -> (Master, Vec<i64>) {
    let m = Master::start(None);
    let fold = |cmd: &str| json!({"command": ["sh", "-c", cmd], "resources": {"cpus": 0.1, "memory": "32M"}});
    let mut ids = m.submit(vec![
        fold("echo hello; mkdir -p outputs; echo 1 > outputs/a.txt"),
        fold("echo to stderr >&2; exit 3"),
        fold("echo done"),
    ]);
    m.wait_all(&ids, Duration::from_secs(60));
    let (status, v) = m.request(
        "POST",
        "/arrays",
        Some(json!({"spec": fold("true"), "array": "0-2"})),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = m.request(
        "POST",
        "/folds",
        Some(json!({"command": ["true"], "requirements": "gpus >= 1000"})),
    );
    assert_eq!(status, 201, "{v}");
    ids.push(v["id"].as_i64().unwrap());
    use base64::Engine;
    let csv = "a,b,y\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n9,10,x\n11,12,y\n";
    let (status, v) = m.request(
        "POST",
        "/datasets",
        Some(json!({"name": "fuzz", "target_column": "y",
            "csv": base64::engine::general_purpose::STANDARD.encode(csv)})),
    );
    assert_eq!(status, 201, "{v}");
    let dataset = v["dataset"]["id"].as_i64().unwrap();
    let (status, v) = m.request(
        "POST",
        &format!("/datasets/{dataset}/splits"),
        Some(json!({"held_out_test": 0.5})),
    );
    assert!(status == 201 || status == 200, "{v}");
    for r in m.get("/runners")["runners"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let (status, v) = m.request("POST", &format!("/runners/{name}/drain"), None);
        assert_eq!(status, 200, "{v}");
    }
    ids.push(dataset);
    (m, ids)
}

/// schemathesis' settings: half the ids and names it puts in paths are ones that exist, and
/// the long poll of `GET /events` does not wait (a long poll waits by design).
fn config(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!(
        r#"[dictionaries.ids]
values = [{}]
[dictionaries.names]
values = ["a.txt", "train.csv"]
[dictionaries.actions]
values = ["hold", "release", "remove"]
[dictionaries.phases]
values = ["train", "test"]

[parameters]
"path.id" = {{ dictionary = "ids", probability = 0.5 }}
"path.name" = {{ dictionary = "names", probability = 0.3 }}
"path.action" = {{ dictionary = "actions", probability = 0.5 }}
"path.phase" = {{ dictionary = "phases", probability = 0.5 }}

[[operations]]
include-path = "/api/v1/events"
parameters = {{ "query.timeout" = "0s" }}
"#,
        ids.join(", ")
    )
}

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let python = venv_with(
        "openapi-venv",
        &TOOLS.join("\n"),
        &TOOLS,
        "pip install schemathesis and openapi-spec-validator (needs PyPI)",
    );
    let bin = python.parent().unwrap();
    let (m, ids) = master_with_data();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schemathesis.toml"), config(&ids)).unwrap();
    let file = dir.path().join("openapi.json");
    let doc = document(&m);
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    run(
        Command::new(bin.join("openapi-spec-validator")).arg(&file),
        "openapi-spec-validator: the document is not valid OpenAPI",
    );
    let out = Command::new(bin.join("schemathesis"))
        .current_dir(dir.path())
        .arg("run")
        .arg(&file)
        .args(["--url", &m.url])
        .args(["--header", &format!("Authorization: Bearer {}", m.token)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,negative_data_rejection,ignored_auth,\
             unsupported_method,missing_required_header",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        // Bounded: under a minute on two busy cores (about 3,000 requests).
        .args(["--max-examples", "20", "--seed", "17", "--workers", "2"])
        // A follow of a fold that has not started waits up to 60 s for it, by design.
        .args(["--request-timeout", "65", "--no-shrink"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("schemathesis:\n{stdout}{stderr}");
    assert!(
        out.status.success(),
        "schemathesis found failures: see its output above"
    );
    let summary = stdout
        .lines()
        .find(|l| l.contains(" generated, ") && l.contains(" passed"))
        .unwrap_or_else(|| panic!("no summary line in schemathesis' output"));
    let generated: u64 = summary.split_whitespace().next().unwrap().parse().unwrap();
    assert!(generated >= 1000, "too few requests made: {summary}");
    // Every operation was run.
    let tested = format!("Tested: {operations}\n");
    assert!(
        stdout.contains(&tested),
        "not every operation was run ({tested})"
    );
}
