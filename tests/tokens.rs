//! Token management on the master's machine (`datarun token create|list|revoke`): several
//! tokens per owner, listed without secrets, revoked one by one or per owner, and expiring;
//! a revoked or expired token answers 401 saying so.

mod common;

use common::Master;
use serde_json::Value;
use std::time::Duration;

fn get(m: &Master, token: &str) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/folds", m.url))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[test]
fn tokens_are_created_listed_revoked_and_expire() {
    let m = Master::start(None);
    // Two tokens for one name: the second does not replace the first.
    let first = m.cli_ok(&["token", "create", "carol"]).trim().to_string();
    let second = m.cli_ok(&["token", "create", "carol"]).trim().to_string();
    assert_ne!(first, second);
    assert_eq!(get(&m, &first).0, 200);
    assert_eq!(get(&m, &second).0, 200);

    // The list shows both (and the admin token), never a secret.
    let listed = m.cli_ok(&["token", "list", "--json"]);
    assert!(!listed.contains(&first) && !listed.contains(&second) && !listed.contains(&m.token));
    let tokens: Value = serde_json::from_str(&listed).unwrap();
    let carol: Vec<&Value> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["owner"] == "carol")
        .collect();
    assert_eq!(carol.len(), 2, "{listed}");
    assert!(carol
        .iter()
        .all(|t| t["admin"] == false && t["revoked_at"].is_null()));
    assert!(
        carol.iter().all(|t| !t["last_used_at"].is_null()),
        "both were used: {listed}"
    );
    let table = m.cli_ok(&["token", "list"]);
    assert!(
        table.contains("carol") && table.contains("valid"),
        "{table}"
    );

    // Revoke the first: 401 saying so; the second still works.
    let id = carol[0]["id"].as_i64().unwrap().to_string();
    let out = m.cli_ok(&["token", "revoke", &id]);
    assert!(out.contains("carol"), "{out}");
    let (status, v) = get(&m, &first);
    assert_eq!(status, 401, "{v}");
    assert!(message(&v).starts_with("token revoked at "), "{v}");
    assert_eq!(get(&m, &second).0, 200);
    let again = m.cli(&["token", "revoke", &id]);
    assert!(!again.status.success(), "revoking twice is an error");
    let unknown = m.cli(&["token", "revoke", "999"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no token with id 999"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // An expiring token works until it expires, then answers 401 "expired".
    let brief = m
        .cli_ok(&["token", "create", "dave", "--expires", "1s"])
        .trim()
        .to_string();
    assert_eq!(get(&m, &brief).0, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, v) = get(&m, &brief);
    assert_eq!(status, 401, "{v}");
    assert!(message(&v).starts_with("token expired at "), "{v}");
    // /runapp/ says so too (403, as its original did).
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/runapp/rawdata/", m.url))
        .basic_auth("databoard", Some(&brief))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.text().unwrap().contains("token expired at"));
    for bad in ["0s", "soon"] {
        let out = m.cli(&["token", "create", "dave", "--expires", bad]);
        assert!(!out.status.success(), "--expires {bad}");
    }

    // Revoke every token of an owner; the admin token is untouched.
    let out = m.cli_ok(&["token", "revoke", "--owner", "carol"]);
    assert!(out.contains("revoked 1 token(s) of carol"), "{out}");
    assert_eq!(get(&m, &second).0, 401);
    assert_eq!(get(&m, &m.token).0, 200);
    // An admin token made with the CLI is an admin.
    let root = m
        .cli_ok(&["token", "create", "root", "--admin"])
        .trim()
        .to_string();
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/maintenance", m.url))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// `serve` keeps its admin token across restarts, and makes a new one when that token was
/// revoked (other tokens untouched).
#[test]
fn serve_replaces_a_revoked_admin_token() {
    let mut m = Master::start(None);
    let carol = m.cli_ok(&["token", "create", "carol"]).trim().to_string();
    let old = m.token.clone();
    m.kill9();
    m.spawn();
    assert_eq!(m.token, old, "kept across a restart");
    let listed: Value = serde_json::from_str(&m.cli_ok(&["token", "list", "--json"])).unwrap();
    let admin_id = listed["tokens"][0]["id"].as_i64().unwrap().to_string();
    assert_eq!(listed["tokens"][0]["owner"], "admin");
    m.cli_ok(&["token", "revoke", &admin_id]);
    m.kill9();
    m.spawn();
    assert_ne!(m.token, old, "a new admin token");
    assert_eq!(get(&m, &m.token).0, 200);
    assert_eq!(get(&m, &old).0, 401);
    assert_eq!(get(&m, &carol).0, 200);
}
