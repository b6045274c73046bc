//! Bad input gets a clear error and changes nothing.

mod common;

use common::{sh, Master, BIN};
use serde_json::json;
use std::process::Command;

#[test]
fn malformed_inventory_stops_serve_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("runners.toml");
    std::fs::write(
        &inv,
        "[[runner]]\nname = \"a\"\ntransport = \"local\"\nslots = 2\ncolour = \"red\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--inventory")
        .arg(&inv)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runners.toml:5") && err.contains("colour"),
        "{err}"
    );
    assert!(
        !dir.path().join("data/datarun.db").exists(),
        "nothing is created for a bad inventory"
    );
    let out = Command::new(BIN)
        .args(["inventory", "check"])
        .arg(&inv)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn bad_requests_get_clear_errors_and_store_nothing() {
    let m = Master::start_with(None, &["--max-body", "1M"]);
    let cases = vec![
        (json!({"command": []}), "command"),
        (json!({"command": ["true"], "colour": "red"}), "colour"),
        (
            json!({"command": ["true"], "resources": {"cpus": -1}}),
            "cpus",
        ),
        (
            json!({"command": ["true"], "resources": {"memory": "-5G"}}),
            "memory",
        ),
        (
            json!({"command": ["true"], "soft_time_limit": "10s", "hard_time_limit": "5s"}),
            "soft_time_limit",
        ),
        (
            json!({"command": ["true"], "inputs": [{"name": "../etc/passwd", "sha256": "0".repeat(64)}]}),
            "../etc/passwd",
        ),
        (
            json!({"command": ["true"], "inputs": [{"name": "/etc/passwd", "sha256": "0".repeat(64)}]}),
            "absolute",
        ),
        (
            json!({"command": ["true"], "inputs": [{"name": "x", "sha256": "a".repeat(64)}]}),
            "not uploaded",
        ),
        (
            json!({"command": ["true"], "priority": "urgent"}),
            "priority",
        ),
        (json!({"command": ["true"], "queue": "a b"}), "queue"),
    ];
    for (body, needle) in cases {
        let (status, v) = m.request("POST", "/folds", Some(body.clone()));
        assert_eq!(status, 400, "{body} -> {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{body}: message {msg:?} should mention {needle:?}"
        );
    }
    let (status, v) = m.raw("POST", "/folds", "application/json", b"{not json".to_vec());
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("JSON"));
    // A batch with one bad fold stores none of them.
    let (status, v) = m.request(
        "POST",
        "/folds/batch",
        Some(json!({"folds": [sh("true"), {"command": []}]})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("fold 1"));
    // Oversized bodies: 413, as JSON.
    let (status, v) = m.raw(
        "POST",
        "/blobs",
        "application/octet-stream",
        vec![0u8; 2 << 20],
    );
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    // Unknown and missing tokens.
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/folds", m.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/folds", m.url))
        .bearer_auth("drt_nope")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Output names cannot escape.
    let (status, _) = m.request("GET", "/folds/1/outputs/..%2Fdatarun.db", None);
    assert!(status == 400 || status == 404, "{status}");
    // Nothing was stored.
    let v = m.get("/folds");
    assert_eq!(v["folds"].as_array().unwrap().len(), 0, "{v}");
}

/// serde reads a struct from a JSON array, field by field: `[["true"]]` was a fold running
/// `true`. Found by the OpenAPI fuzz run (tests/openapi.rs); every JSON body is an object now.
#[test]
fn a_json_body_that_is_not_an_object_is_refused_and_stores_nothing() {
    let m = Master::start(None);
    let json_bodies: [(&str, &[u8]); 4] = [
        ("/folds", b"[[\"true\"]]"),
        ("/folds/batch", b" [[[\"true\"]]]"),
        ("/results/new", b"[null, null]"),
        ("/datasets", b"\"x\""),
    ];
    for (path, body) in json_bodies {
        let (status, v) = m.raw("POST", path, "application/json", body.to_vec());
        assert_eq!(status, 400, "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("must be a JSON object"), "{path}: {msg}");
    }
    // An optional body sent without a content type is held to the same.
    let (status, v) = m.raw(
        "POST",
        "/folds/bulk/hold",
        "text/plain",
        b"[\"x\"]".to_vec(),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{v}"
    );
    // White space before the object is fine; an empty optional body still means none.
    let mut spaced = vec![b' '; 2000];
    spaced.extend_from_slice(br#"{"command": ["true"], "queue": "q1"}"#);
    let (status, v) = m.raw("POST", "/folds", "application/json", spaced);
    assert_eq!(status, 201, "{v}");
    let (status, v) = m.raw("POST", "/results/new", "application/json", Vec::new());
    assert_eq!(status, 200, "{v}");
    // Only the one good fold was stored.
    let v = m.get("/folds");
    let folds = v["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 1, "{v}");
    assert_eq!(folds[0]["spec"]["queue"], "q1");
}

#[test]
fn tokens_own_folds() {
    let m = Master::start(None);
    let alice = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let bob = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    let http = reqwest::blocking::Client::new();
    let resp = http
        .post(format!("{}/api/v1/folds", m.url))
        .bearer_auth(&alice)
        .json(&sh("sleep 30"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let id = resp.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(m.fold(id)["fold"]["owner"], "alice");
    let resp = http
        .post(format!("{}/api/v1/folds/{id}/remove", m.url))
        .bearer_auth(&bob)
        .send()
        .unwrap();
    // Another owner's fold answers as a missing one (README "Tenancy").
    assert_eq!(resp.status().as_u16(), 404);
    let resp = http
        .post(format!("{}/api/v1/folds/{id}/remove", m.url))
        .bearer_auth(&alice)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}
