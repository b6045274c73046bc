//! Tenancy (README "Tenancy"): owners A and B, with tokens made by the CLI. B gets exactly
//! what a missing resource answers (404, the same message) for each of A's folds, datasets,
//! splits, submissions and results, 403 for a listing filter naming A, and listings without
//! A's rows; B cannot name A's blob as an input (nothing stored) nor read it back; the same
//! through `/runapp/`. A and admin see A's. Cheap: process folds only, no Docker (submission
//! folds name the fold image, which the process runner cannot run, so they are held and end
//! ERROR at once, which is all their results need here).
//!
//! The resource routes are one table (`routes`): add a row to cover a new route.

mod common;

use common::{sh, Master};
use datarun::api::runapp::encode_zb64;
use serde_json::{json, Value};
use std::time::Duration;

const RUNNER: &str = "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 4\ncpus = 4\nmemory = \"4G\"\nqueues = [\"*\"]\n";

/// An id no resource has.
const MISSING: i64 = 987_654;

const CSV: &[u8] = b"x,y\n1,a\n2,b\n3,a\n4,b\n5,a\n6,b\n7,a\n8,b\n";

fn call(m: &Master, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    m.request_as(token, method, path, body)
}

fn ok(m: &Master, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = call(m, token, method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

fn upload(m: &Master, token: &str, data: &[u8]) -> String {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/blobs", m.url))
        .bearer_auth(token)
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    resp.json::<Value>().unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A `/runapp/` request with `token` (Basic auth, as the databoard sends it): status and JSON.
fn runapp_call(
    m: &Master,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new()
        .request(method.parse().unwrap(), format!("{}/runapp/{path}", m.url))
        .basic_auth("databoard", Some(token));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// `rows` as `/runapp/` indices: b64(zlib(int64 little-endian)).
fn indices(rows: std::ops::Range<i64>) -> String {
    let bytes: Vec<u8> = rows.flat_map(|i| i.to_le_bytes()).collect();
    encode_zb64(&bytes)
}

fn b64(data: &[u8]) -> String {
    datarun::protocol::b64(data)
}

/// A's resources, by kind.
struct Ids {
    done: i64,
    running: i64,
    dataset: i64,
    problem: i64,
    split: i64,
    submission: i64,
    sf: i64,
}

/// A resource route: `{}` is the id. B's answer must equal the answer to the same route with
/// an id nobody has (B must not learn that it exists); A's must succeed when `a_ok`.
struct Route {
    method: &'static str,
    path: &'static str,
    id: fn(&Ids) -> i64,
    body: Option<fn() -> Value>,
    a_ok: bool,
}

const fn route(method: &'static str, path: &'static str, id: fn(&Ids) -> i64) -> Route {
    Route {
        method,
        path,
        id,
        body: None,
        a_ok: true,
    }
}

fn routes() -> Vec<Route> {
    vec![
        route("GET", "/folds/{}", |i| i.done),
        route("GET", "/folds/{}/log", |i| i.done),
        route("GET", "/folds/{}/outputs/copy", |i| i.done),
        route("GET", "/folds/{}/analyze", |i| i.running),
        route("GET", "/folds/{}/provenance", |i| i.done),
        Route {
            body: Some(|| json!({"env": {"API_KEY": "bob's guess"}})),
            ..route("POST", "/folds/{}/rerun", |i| i.done)
        },
        Route {
            body: Some(|| json!({"reason": "mine now"})),
            a_ok: false,
            ..route("POST", "/folds/{}/hold", |i| i.running)
        },
        Route {
            a_ok: false,
            ..route("POST", "/folds/{}/release", |i| i.running)
        },
        Route {
            a_ok: false,
            ..route("POST", "/folds/{}/remove", |i| i.running)
        },
        route("GET", "/datasets/{}", |i| i.dataset),
        route("GET", "/datasets/{}/table", |i| i.dataset),
        route("GET", "/datasets/{}/files/problem.py", |i| i.problem),
        route("GET", "/datasets/{}/splits", |i| i.dataset),
        Route {
            body: Some(|| json!({"held_out_test": 0.5})),
            ..route("POST", "/datasets/{}/splits", |i| i.dataset)
        },
        route("GET", "/datasets/{}/leaderboard", |i| i.dataset),
        route("GET", "/splits/{}", |i| i.split),
        Route {
            a_ok: false,
            ..route("DELETE", "/datasets/{}", |i| i.problem)
        },
        route("GET", "/submissions/{}", |i| i.submission),
        Route {
            body: Some(|| json!({"force": "retrain"})),
            ..route("POST", "/submissions/{}/resubmit", |i| i.submission)
        },
        Route {
            body: Some(|| json!({"folds": [{"train_is": [0, 1], "test_is": [2]}]})),
            ..route("POST", "/submissions/{}/folds", |i| i.submission)
        },
        route("GET", "/submission-folds/{}", |i| i.sf),
        Route {
            a_ok: false,
            ..route("GET", "/submission-folds/{}/predictions/test", |i| i.sf)
        },
    ]
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn owners_see_and_change_only_their_own() {
    let m = Master::start(Some(RUNNER));
    let admin = m.token.clone();
    let a = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let b = m.cli_ok(&["token", "create", "bob"]).trim().to_string();

    // A's resources: a done fold with a secret in its env, an input, an output and a log;
    // a running one; a CSV dataset with a split and a submission; a problem dataset.
    let secret = upload(&m, &a, b"alice's secret data\n");
    let fold = |cmd: &str, inputs: Value| {
        let mut spec = sh(cmd);
        spec["inputs"] = inputs;
        spec["env"] = json!({"API_KEY": "alice-secret"});
        ok(&m, &a, "POST", "/folds", Some(spec))["id"]
            .as_i64()
            .unwrap()
    };
    let done = fold(
        "cat input/secret.txt > $DATARUN_OUTPUT/copy; echo logged",
        json!([{"name": "secret.txt", "sha256": secret}]),
    );
    let running = fold("sleep 60", json!([]));
    m.wait_all(&[done], Duration::from_secs(30));
    m.wait_state(running, "running", Duration::from_secs(30));
    let dataset = ok(
        &m,
        &a,
        "POST",
        "/datasets",
        Some(json!({"name": "d", "target_column": "y",
        "csv": b64(CSV), "workflow_elements": ["classifier"], "score_types": ["accuracy"]})),
    )["dataset"]["id"]
        .as_i64()
        .unwrap();
    let problem = ok(
        &m,
        &a,
        "POST",
        "/datasets",
        Some(json!({"name": "p", "workflow_elements": ["classifier"],
        "files": {"problem.py": b64(b"def prepare_data(d): pass\n"), "data.csv": b64(CSV)}})),
    )["dataset"]["id"]
        .as_i64()
        .unwrap();
    let split = ok(
        &m,
        &a,
        "POST",
        &format!("/datasets/{dataset}/splits"),
        Some(json!({"held_out_test": 0.25})),
    )["split"]["id"]
        .as_i64()
        .unwrap();
    let sub = ok(
        &m,
        &a,
        "POST",
        "/submissions",
        Some(
            json!({"dataset_id": dataset, "split_id": split, "name": "s",
        "files": {"classifier.py": b64(b"class Classifier: pass\n")}, "cv": {"k": 2}}),
        ),
    )["submission"]
        .clone();
    let ids = Ids {
        done,
        running,
        dataset,
        problem,
        split,
        submission: sub["id"].as_i64().unwrap(),
        sf: sub["folds"][0]["id"].as_i64().unwrap(),
    };
    let before = ok(&m, &admin, "GET", "/folds", None)["folds"].clone();

    // B: every route of A's resources answers as if the resource did not exist, and A's and
    // admin's reads succeed.
    for r in routes() {
        let body = r.body.map(|f| f());
        let theirs = r.path.replace("{}", &(r.id)(&ids).to_string());
        let missing = r.path.replace("{}", &MISSING.to_string());
        let (status, v) = call(&m, &b, r.method, &theirs, body.clone());
        let (want, w) = call(&m, &b, r.method, &missing, body.clone());
        assert_eq!(want, 404, "{} {missing}: {w}", r.method);
        assert_eq!(
            (status, message(&v).replace(&(r.id)(&ids).to_string(), "ID")),
            (want, message(&w).replace(&MISSING.to_string(), "ID")),
            "B on A's {} {theirs}: {v}",
            r.method
        );
        if r.a_ok && r.method == "GET" {
            ok(&m, &a, r.method, &theirs, body.clone());
            ok(&m, &admin, r.method, &theirs, body);
        }
    }
    // ... and changed nothing.
    assert_eq!(
        ok(&m, &admin, "GET", "/folds", None)["folds"]
            .as_array()
            .unwrap()
            .len(),
        before.as_array().unwrap().len()
    );
    assert_eq!(
        ok(&m, &a, "GET", &format!("/folds/{running}"), None)["fold"]["state"],
        "running"
    );
    assert_eq!(
        ok(
            &m,
            &a,
            "GET",
            &format!("/submissions/{}", ids.submission),
            None
        )["submission"]["folds"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(&m, &a, "GET", &format!("/datasets/{problem}"), None);
    let log = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/folds/{done}/log", m.url))
        .bearer_auth(&a)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(log, "logged\n", "A reads its own log");

    // Listings: a filter naming A is 403; without one, B's rows only.
    let (status, v) = call(&m, &b, "GET", "/folds?owner=alice", None);
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        ok(&m, &a, "GET", "/folds?owner=alice", None)["folds"]
            .as_array()
            .unwrap()
            .len(),
        2 + 2
    );
    let lists = [
        ("/folds", "folds"),
        ("/queue", "counts"),
        ("/owners", "owners"),
        ("/owners", "counts"),
        ("/datasets", "datasets"),
        ("/submissions", "submissions"),
    ];
    for (path, key) in lists {
        let mine = ok(&m, &b, "GET", path, None)[key].clone();
        assert!(
            !mine.to_string().contains("alice"),
            "B's {path} shows A's: {mine}"
        );
        let all = ok(&m, &admin, "GET", path, None)[key].clone();
        assert!(
            all.to_string().contains("alice"),
            "admin's {path} lacks A's: {all}"
        );
        assert!(
            !ok(&m, &a, "GET", path, None)[key]
                .as_array()
                .unwrap()
                .is_empty(),
            "A's {path}"
        );
    }
    let listed = ok(
        &m,
        &b,
        "GET",
        &format!("/submissions?dataset_id={dataset}"),
        None,
    );
    assert_eq!(listed["submissions"], json!([]), "{listed}");
    let all = ok(&m, &admin, "GET", "/datasets", None)["datasets"].clone();
    assert_eq!(
        all.as_array().unwrap().len(),
        2,
        "admin sees A's datasets: {all}"
    );
    // Runners: facts for everyone, attempt ids for admins only.
    let runners = ok(&m, &b, "GET", "/runners", None)["runners"].clone();
    assert_eq!(runners[0]["attempts"], json!([]), "{runners}");
    assert_eq!(runners[0]["slots_used"], 1, "{runners}");
    let runners = ok(&m, &admin, "GET", "/runners", None)["runners"].clone();
    assert_eq!(
        runners[0]["attempts"].as_array().unwrap().len(),
        1,
        "{runners}"
    );
    let (status, v) = call(&m, &b, "GET", "/maintenance", None);
    assert_eq!(status, 403, "{v}");
    ok(&m, &admin, "GET", "/maintenance", None);

    // Results: B's feed and list never hand out A's (A's feed still has them afterwards).
    assert_eq!(
        ok(&m, &b, "POST", "/results/new", None)["results"],
        json!([])
    );
    let listed = ok(
        &m,
        &b,
        "POST",
        "/results/list",
        Some(json!({"ids": [ids.sf]})),
    );
    assert_eq!(
        (listed["results"].clone(), listed["missing"].clone()),
        (json!([]), json!([ids.sf]))
    );
    let listed = ok(
        &m,
        &admin,
        "POST",
        "/results/list",
        Some(json!({"ids": [ids.sf]})),
    );
    assert_eq!(listed["results"].as_array().unwrap().len(), 1, "{listed}");
    let feed = ok(&m, &a, "POST", "/results/new", None)["results"].clone();
    assert_eq!(
        feed.as_array().unwrap().len(),
        2,
        "A's two ERROR folds: {feed}"
    );

    // Blobs: B cannot name A's blob (answered as a missing one; nothing stored) ...
    let nobody = "0".repeat(64);
    let with_input = |sha: &str| {
        let mut spec = sh("cat input/x > $DATARUN_OUTPUT/x");
        spec["inputs"] = json!([{"name": "x", "sha256": sha}]);
        spec
    };
    let (status, v) = call(&m, &b, "POST", "/folds", Some(with_input(&secret)));
    let (_, w) = call(&m, &b, "POST", "/folds", Some(with_input(&nobody)));
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        message(&v).replace(&secret, "SHA"),
        message(&w).replace(&nobody, "SHA")
    );
    let (status, v) = call(
        &m,
        &b,
        "POST",
        "/folds/batch",
        Some(json!({"folds": [sh("true"), with_input(&secret)]})),
    );
    assert_eq!(status, 400, "{v}");
    let table = upload(&m, &a, CSV);
    let (status, v) = call(
        &m,
        &b,
        "POST",
        "/datasets",
        Some(json!({"name": "mine", "target_column": "y", "table_sha256": table})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("no blob"), "{v}");
    let (status, v) = call(
        &m,
        &b,
        "POST",
        "/submissions",
        Some(json!({"dataset_id": dataset, "name": "s",
        "files": {"classifier.py": b64(b"x")}, "cv": {"k": 2}})),
    );
    assert_eq!(
        (status, message(&v)),
        (404, format!("no dataset with id {dataset}")),
        "{v}"
    );
    assert_eq!(
        ok(&m, &admin, "GET", "/folds?owner=bob", None)["folds"],
        json!([]),
        "nothing of B's stored"
    );
    assert_eq!(
        ok(&m, &admin, "GET", "/datasets", None)["datasets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // ... while A and admin can; and B can once B uploads the same bytes (B has them).
    ok(&m, &a, "POST", "/folds", Some(with_input(&secret)));
    ok(&m, &admin, "POST", "/folds", Some(with_input(&secret)));
    ok(
        &m,
        &a,
        "POST",
        "/datasets",
        Some(json!({"name": "from-blob", "target_column": "y", "table_sha256": table})),
    );
    assert_eq!(upload(&m, &b, b"alice's secret data\n"), secret);
    ok(&m, &b, "POST", "/folds", Some(with_input(&secret)));
    // Names are per owner: B may call a dataset "d" too.
    ok(
        &m,
        &b,
        "POST",
        "/datasets",
        Some(json!({"name": "d", "target_column": "y", "csv": b64(CSV)})),
    );

    // A still changes its own: hold, then remove; deletes its problem dataset.
    ok(&m, &a, "POST", &format!("/folds/{running}/hold"), None);
    ok(&m, &a, "POST", &format!("/folds/{running}/remove"), None);
    ok(&m, &a, "DELETE", &format!("/datasets/{problem}"), None);
}

/// `/runapp/` (Basic auth, a token as the password) follows the same rule, and its ids —
/// chosen by each client — are per owner.
#[test]
fn runapp_tenants_see_only_their_own() {
    let m = Master::start(Some(RUNNER));
    let a = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let b = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    let runapp = |token: &str, method: &str, path: &str, body: Option<Value>| {
        runapp_call(&m, token, method, path, body)
    };
    // Each posts raw data named "d", splits it, and posts fold 1 of submission 1.
    let post_all = |token: &str, classifier: &[u8]| -> i64 {
        let (status, raw) = runapp(
            token,
            "POST",
            "rawdata/",
            Some(json!({"name": "d", "target_column": "y",
            "workflow_elements": "classifier", "files": {"d.csv": encode_zb64(CSV)}})),
        );
        assert_eq!(status, 201, "{raw}");
        let raw = raw["id"].as_i64().unwrap();
        let (status, v) = runapp(
            token,
            "POST",
            "rawdata/split/",
            Some(json!({"raw_data_id": raw, "held_out_test": 0.25})),
        );
        assert_eq!(status, 200, "{v}");
        let (status, v) = runapp(
            token,
            "POST",
            "submissionfold/",
            Some(json!({"databoard_sf_id": 1, "databoard_s_id": 1,
            "raw_data": raw, "files": {"classifier.py": encode_zb64(classifier)},
            "train_is": indices(0..4), "test_is": indices(4..6)})),
        );
        assert_eq!(status, 201, "{v}");
        raw
    };
    let a_raw = post_all(&a, b"# alice\n");

    // B sees none of A's raw data or folds, and cannot split A's raw data.
    let (_, list) = runapp(&b, "GET", "rawdata/", None);
    assert_eq!(list, json!([]), "{list}");
    for path in ["submissionfold/", "submissionfold-light/"] {
        let (status, v) = runapp(&b, "GET", path, None);
        assert_eq!((status, v), (200, json!([])), "{path}");
    }
    let (status, v) = runapp(&b, "GET", "submissionfold/1/", None);
    assert_eq!((status, v), (404, json!({"detail": "Not found."})));
    let (_, v) = runapp(
        &b,
        "POST",
        "testpredictions/list/",
        Some(json!({"list_submission_fold": [1]})),
    );
    assert_eq!(v, json!([]));
    let (_, v) = runapp(&b, "POST", "testpredictions/new/", None);
    assert_eq!(v, json!([]));
    for path in ["rawdata/split/", "rawdata/customsplit/"] {
        let (status, v) = runapp(
            &b,
            "POST",
            path,
            Some(json!({"raw_data_id": a_raw, "held_out_test": 0.5})),
        );
        assert_eq!(
            (status, v),
            (
                404,
                json!({"detail": format!("no dataset with id {a_raw}")})
            ),
            "{path}"
        );
    }
    // A fold posted by B on A's raw data is refused, and stores nothing.
    let (status, v) = runapp(
        &b,
        "POST",
        "submissionfold/",
        Some(json!({"databoard_sf_id": 2, "databoard_s_id": 2,
        "raw_data": a_raw, "files": {"classifier.py": encode_zb64(b"x")}, "train_is": indices(0..4), "test_is": indices(4..6)})),
    );
    assert_eq!(status, 404, "{v}");

    // B's own ids 1 and 1 and name "d" are its own, beside A's.
    let b_raw = post_all(&b, b"# bob\n");
    assert_ne!(a_raw, b_raw);
    let (_, mine) = runapp(&b, "GET", "submissionfold/", None);
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let (_, theirs) = runapp(&a, "GET", "submissionfold/1/", None);
    let (_, native) = call(&m, &a, "GET", "/submissions", None);
    assert_eq!(
        native["submissions"].as_array().unwrap().len(),
        1,
        "{native}"
    );
    assert_eq!(theirs["databoard_sf_id"], 1);
    // The feed: each gets its own fold 1 (held: the process runner has no fold image), once.
    for token in [&a, &b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let got = loop {
            let (_, v) = runapp(token, "POST", "testpredictions/new/", None);
            if !v.as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
                break v;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
        assert_eq!(got[0]["state"], "ERROR", "{got}");
    }
    // Admin's native view has both submissions.
    let all = ok(&m, &m.token, "GET", "/submissions", None)["submissions"].clone();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
}

/// `GET /runners` gives a non-admin token the runners' facts and use, but no attempt id of
/// anyone's: not the running ones, not those queued behind them (prefetch), not those being
/// cancelled. An admin sees them all.
#[test]
fn runners_show_no_attempt_ids_to_tenants() {
    let inventory = "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 1\nprefetch = 2\ncpus = 4\nmemory = \"4G\"\nqueues = [\"*\"]\n";
    let m = Master::start(Some(inventory));
    let admin = m.token.clone();
    let a = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let b = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    let ids: Vec<i64> = (0..2)
        .map(|_| {
            ok(&m, &a, "POST", "/folds", Some(sh("sleep 60")))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    m.wait_state(ids[0], "running", Duration::from_secs(30));
    // The second waits on the runner behind the first.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let r = ok(&m, &admin, "GET", "/runners", None)["runners"][0].clone();
        let n = |k: &str| r[k].as_array().map_or(0, Vec::len);
        if n("attempts") == 1 && n("queued") == 1 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no attempt queued behind the running one: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for token in [&a, &b] {
        let r = ok(&m, token, "GET", "/runners", None)["runners"][0].clone();
        for key in ["attempts", "queued", "cancelling"] {
            // An empty list may be left out.
            let shown = r[key].as_array().map_or(0, Vec::len);
            assert_eq!(shown, 0, "{key} shown to a tenant: {r} (admin sees {seen})");
        }
        assert_eq!(r["slots_used"], 1, "{r}");
    }
    for id in ids {
        ok(
            &m,
            &admin,
            "POST",
            &format!("/folds/{id}/remove"),
            Some(json!({})),
        );
    }
}

/// `/runapp/` indices are kept as the base64 they decode from, without what decoders skip: a
/// text padded with 1 MiB of characters outside the alphabet is stored and listed at the
/// size of its indices (padding made every listing of a tenant's folds carry up to 32 MiB per
/// fold), and a forced re-post of the padded text still counts as the same indices.
#[test]
fn runapp_indices_are_kept_without_padding() {
    let m = Master::start(Some(RUNNER));
    let a = m.cli_ok(&["token", "create", "alice"]).trim().to_string();
    let runapp =
        |method: &str, path: &str, body: Option<Value>| runapp_call(&m, &a, method, path, body);
    let (status, raw) = runapp(
        "POST",
        "rawdata/",
        Some(json!({"name": "d", "target_column": "y",
        "workflow_elements": "classifier", "files": {"d.csv": encode_zb64(CSV)}})),
    );
    assert_eq!(status, 201, "{raw}");
    let raw = raw["id"].as_i64().unwrap();
    let (status, v) = runapp(
        "POST",
        "rawdata/split/",
        Some(json!({"raw_data_id": raw, "held_out_test": 0.25})),
    );
    assert_eq!(status, 200, "{v}");
    let (train, test) = (indices(0..4), indices(4..6));
    let pad = ".".repeat(1 << 20);
    let padded = format!("{}\n{pad}{}", &train[..4], &train[4..]);
    let fold = json!({"databoard_sf_id": 1, "databoard_s_id": 1,
        "raw_data": raw, "files": {"classifier.py": encode_zb64(b"# a\n")},
        "train_is": padded, "test_is": test});
    let (status, v) = runapp("POST", "submissionfold/", Some(fold.clone()));
    assert_eq!(
        status,
        201,
        "{}",
        &v.to_string()[..200.min(v.to_string().len())]
    );
    let (status, list) = runapp("GET", "submissionfold/", None);
    assert_eq!(status, 200);
    assert_eq!(
        list[0]["train_is"],
        json!(train),
        "stored as posted, padding and all"
    );
    assert_eq!(list[0]["test_is"], json!(test));
    assert!(
        list.to_string().len() < 64 << 10,
        "{} bytes",
        list.to_string().len()
    );
    // The same padded text re-posted with force is the same fold's indices.
    let mut again = fold;
    again["force"] = json!("submission_fold");
    let (status, v) = runapp("POST", "submissionfold/", Some(again));
    assert!((200..300).contains(&status), "{status} {v}");
}
