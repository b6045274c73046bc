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
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
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
/// fuzzer submits (commands made of random text) never run.
fn master_with_data() -> Master {
    let m = Master::start(None);
    let fold = |cmd: &str| json!({"command": ["sh", "-c", cmd], "resources": {"cpus": 0.1, "memory": "32M"}});
    let ids = m.submit(vec![
        fold("echo hello; mkdir -p outputs; echo 1 > outputs/a.txt"),
        fold("echo to stderr >&2; exit 3"),
        fold("echo done"),
    ]);
    m.wait_all(&ids, Duration::from_secs(60));
    let (status, v) = m.request("POST", "/arrays", Some(json!({"spec": fold("true"), "array": "0-2"})));
    assert_eq!(status, 201, "{v}");
    let (status, v) = m.request("POST", "/folds", Some(json!({"command": ["true"], "requirements": "gpus >= 1000"})));
    assert_eq!(status, 201, "{v}");
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
    let (status, v) = m.request("POST", &format!("/datasets/{dataset}/splits"), Some(json!({"held_out_test": 0.5})));
    assert!(status == 201 || status == 200, "{v}");
    for r in m.get("/runners")["runners"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let (status, v) = m.request("POST", &format!("/runners/{name}/drain"), None);
        assert_eq!(status, 200, "{v}");
    }
    m
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
    let m = master_with_data();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&document(&m)).unwrap()).unwrap();
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
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--seed", "15", "--workers", "2"])
        .args(["--request-timeout", "30", "--no-shrink"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("schemathesis:\n{stdout}{stderr}");
    assert!(out.status.success(), "schemathesis found failures: see its output above");
    // The master logged no 5xx either (a handler's error answer is logged at error level).
    let (status, _) = m.request("GET", "/health", None);
    assert_eq!(status, 200);
}
