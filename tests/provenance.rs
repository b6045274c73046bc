//! Provenance and rerun (README "Provenance and rerun") through the real master, agent, CLI
//! and REST: a docker fold (busybox, needs Docker: fails loudly without it) records the image
//! id the engine ran, its inputs' sha256, argv, environment with its secret redacted, runner,
//! versions and limits; `fold rerun --compare` of it is byte-identical (exit 0) and runs the
//! image pinned by id. A process fold records its program and its sha256; one that writes the
//! clock reruns different (exit 1, naming the output). Another owner gets 404 for both routes.

mod common;

use common::{Master, BUSYBOX};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn docker_runner(name: &str) -> String {
    common::ensure_image("build-busybox.sh", BUSYBOX);
    format!(
        "[[runner]]\nname = \"{name}\"\ntransport = \"local\"\nexecutor = \"docker\"\nimages = [\"{BUSYBOX}\"]\nslots = 2\ncpus = 2\nmemory = \"2G\"\nqueues = [\"*\"]\n"
    )
}

const PROCESS_RUNNER: &str = "[[runner]]\nname = \"prov-proc\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 2\ncpus = 2\nmemory = \"2G\"\nqueues = [\"*\"]\nhard_time_limit = \"10m\"\n";

fn upload(m: &Master, data: &[u8]) -> String {
    let (status, v) = m.raw("POST", "/blobs", "application/octet-stream", data.to_vec());
    assert_eq!(status, 201, "{v}");
    v["sha256"].as_str().unwrap().to_string()
}

fn submit_one(m: &Master, spec: Value) -> i64 {
    let id = m.submit(vec![spec])[0];
    let f = &m.wait_all(&[id], Duration::from_secs(60))[0];
    assert_eq!(f["state"], "done", "{f}");
    id
}

/// `datarun ARGS` against the master: (exit code, stdout, stderr).
fn cli(m: &Master, args: &[&str]) -> (i32, String, String) {
    let out = m.cli(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `datarun fold rerun ID --compare -e SECRET`.
fn rerun_compare(m: &Master, id: i64, secret: &str) -> (i32, String, String) {
    let id = id.to_string();
    let args = [
        "fold",
        "rerun",
        &id,
        "--compare",
        "-e",
        secret,
        "--timeout",
        "90s",
    ];
    cli(m, &args)
}

/// Bob, another owner, gets for A's fold exactly what a missing fold answers.
fn another_owner_sees_nothing(m: &Master, fold: i64) {
    let bob = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    for (method, route, body) in [
        ("GET", "provenance", None),
        ("POST", "rerun", Some(json!({}))),
    ] {
        let (status, theirs) = m.request_as(
            &bob,
            method,
            &format!("/folds/{fold}/{route}"),
            body.clone(),
        );
        let (missing_status, missing) =
            m.request_as(&bob, method, &format!("/folds/987654/{route}"), body);
        assert_eq!(status, 404, "{route}: {theirs}");
        assert_eq!(missing_status, 404);
        assert_eq!(
            theirs["error"]["message"]
                .as_str()
                .map(|s| s.replace(&fold.to_string(), "N")),
            missing["error"]["message"]
                .as_str()
                .map(|s| s.replace("987654", "N")),
            "{route}: the same answer as a missing fold"
        );
    }
}

#[test]
fn a_docker_fold_records_its_image_and_reruns_byte_identical() {
    let m = Master::start(Some(&docker_runner("prov-box")));
    let input = upload(&m, b"hello provenance\n");
    let spec = json!({
        "command": ["sh", "-c", "cat $DATARUN_INPUT/in.txt > $DATARUN_OUTPUT/out.txt; echo $SEED > $DATARUN_OUTPUT/seed"],
        "image": BUSYBOX,
        "inputs": [{"name": "in.txt", "sha256": input}],
        "env": {"SEED": "7", "API_TOKEN": "s3cret"},
        "resources": {"cpus": 0.5, "memory": "128M"},
        "hard_time_limit": 120,
    });
    let id = submit_one(&m, spec);

    let p = m.get(&format!("/folds/{id}/provenance"));
    let engine_id = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", BUSYBOX])
        .output()
        .unwrap();
    let engine_id = String::from_utf8_lossy(&engine_id.stdout)
        .trim()
        .to_string();
    assert!(engine_id.starts_with("sha256:"), "{engine_id}");
    assert_eq!(p["fold"], id);
    assert_eq!(p["executor"], "docker");
    assert_eq!(p["image"], BUSYBOX);
    assert_eq!(p["image_id"], engine_id.as_str(), "{p}");
    assert_eq!(p["inputs"], json!({"in.txt": input}));
    assert_eq!(p["argv"][0], "sh");
    assert_eq!(p["env"], json!({"SEED": "7", "API_TOKEN": "<redacted>"}));
    assert_eq!(p["runner"]["name"], "prov-box");
    assert!(p["runner"]["cpus"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["runner"]["docker_version"].is_string(), "{p}");
    assert_eq!(p["versions"], json!({"agent": VERSION, "master": VERSION}));
    assert_eq!(p["limits"]["cpus"], 0.5);
    assert_eq!(p["limits"]["memory"], 128 << 20);
    assert_eq!(p["limits"]["hard_time_limit_ms"], 120_000);
    let attempt = p["attempt"].as_i64().unwrap();
    assert_eq!(
        m.get(&format!("/folds/{id}/provenance?attempt={attempt}")),
        p
    );
    let (status, v) = m.request("GET", &format!("/folds/{id}/provenance?attempt=1x"), None);
    assert_eq!(status, 400, "{v}");

    // The CLI's text: aligned rows, the secret's value nowhere.
    let text = m.cli_ok(&["fold", "provenance", &id.to_string()]);
    assert!(text.contains(&engine_id), "{text}");
    assert!(text.contains("API_TOKEN=<redacted>"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let as_json: Value =
        serde_json::from_str(&m.cli_ok(&["fold", "provenance", &id.to_string(), "--json"]))
            .unwrap();
    assert_eq!(as_json, p);

    // A redacted secret must be given again; nothing is submitted without it.
    let before = m.get("/folds")["folds"].as_array().unwrap().len();
    let (code, _, err) = cli(&m, &["fold", "rerun", &id.to_string(), "--compare"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("API_TOKEN") && err.contains("give them again"),
        "{err}"
    );
    assert_eq!(m.get("/folds")["folds"].as_array().unwrap().len(), before);

    let (code, out, err) = rerun_compare(&m, id, "API_TOKEN=s3cret");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("identical"), "{out}");
    let rerun: i64 = out.lines().next().unwrap().trim().parse().unwrap();
    let f = m.fold(rerun);
    assert_eq!(
        f["fold"]["spec"]["image"],
        format!("{BUSYBOX}@{engine_id}"),
        "the rerun runs the image pinned by id"
    );
    assert_eq!(f["fold"]["spec"]["env"]["API_TOKEN"], "s3cret");
    let again = m.get(&format!("/folds/{rerun}/provenance"));
    assert_eq!(again["image_id"], engine_id.as_str());
    assert_eq!(again["inputs"], p["inputs"]);

    another_owner_sees_nothing(&m, id);
}

#[test]
fn a_process_fold_records_its_program_and_a_clock_reruns_different() {
    let m = Master::start(Some(PROCESS_RUNNER));
    let spec = json!({
        "command": ["sh", "-c", "date +%s%N > $DATARUN_OUTPUT/clock; echo fixed > $DATARUN_OUTPUT/fixed"],
        "env": {"DB_PASSWORD": "pw", "SEED": "1"},
        "resources": {"cpus": 0.25, "memory": "64M"},
        "soft_time_limit": 30,
    });
    let id = submit_one(&m, spec);
    let p = m.get(&format!("/folds/{id}/provenance"));
    assert_eq!(p["executor"], "process");
    assert!(p["image"].is_null(), "{p}");
    let program = p["program"]["path"].as_str().unwrap();
    let sum = Command::new("sha256sum").arg(program).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(
        p["program"]["sha256"].as_str().unwrap(),
        sum.split_whitespace().next().unwrap(),
        "{p}"
    );
    assert_eq!(p["env"]["DB_PASSWORD"], "<redacted>");
    assert_eq!(p["env"]["SEED"], "1");
    assert_eq!(p["runner"]["name"], "prov-proc");
    assert_eq!(p["versions"]["agent"], VERSION);
    assert_eq!(p["limits"]["soft_time_limit_ms"], 30_000);
    assert_eq!(
        p["limits"]["hard_time_limit_ms"], 600_000,
        "the runner's limit"
    );

    // A fold with no finished attempt has no record yet; an attempt it does not have, none.
    let running = m.submit(vec![common::sh("sleep 30")])[0];
    m.wait_state(running, "running", Duration::from_secs(30));
    let (status, v) = m.request("GET", &format!("/folds/{running}/provenance"), None);
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none has finished"),
        "{v}"
    );
    let (status, v) = m.request(
        "GET",
        &format!("/folds/{id}/provenance?attempt=99999"),
        None,
    );
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has no attempt 99999"),
        "{v}"
    );
    m.cli_ok(&["queue", "remove", &running.to_string()]);

    // Only redacted secrets may be given again.
    let (status, v) = m.request(
        "POST",
        &format!("/folds/{id}/rerun"),
        Some(json!({"env": {"DB_PASSWORD": "pw", "SEED": "2"}})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("SEED"),
        "{v}"
    );

    let (code, out, err) = rerun_compare(&m, id, "DB_PASSWORD=pw");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("different: 1 of 2 outputs differ"), "{out}");
    let clock = out.lines().find(|l| l.starts_with("clock")).unwrap();
    assert!(clock.trim_end().ends_with("NO"), "{out}");
    let fixed = out.lines().find(|l| l.starts_with("fixed")).unwrap();
    assert!(fixed.trim_end().ends_with("yes"), "{out}");

    another_owner_sees_nothing(&m, id);
}

/// On a runner whose allowlist has no "*", a pinned image runs only while the image with that
/// id still carries an allowed tag: the pin cannot smuggle in another image.
#[test]
fn a_pinned_image_that_lost_its_allowed_tag_is_refused() {
    const MOVED: &str = "datarun/prov-moved:1";
    common::ensure_image("build-busybox.sh", BUSYBOX);
    let tag = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {out:?}");
    };
    tag(&["tag", BUSYBOX, MOVED]);
    let m = Master::start(Some(
        &docker_runner("prov-moved")
            .replace(&format!("[\"{BUSYBOX}\"]"), &format!("[\"{MOVED}\"]")),
    ));
    let spec = json!({
        "command": ["sh", "-c", "echo hi > $DATARUN_OUTPUT/hi"],
        "image": MOVED,
        "resources": {"cpus": 0.25, "memory": "64M"},
    });
    let id = submit_one(&m, spec);
    tag(&["rmi", MOVED]);
    let made = m.request("POST", &format!("/folds/{id}/rerun"), None);
    assert_eq!(made.0, 201, "{}", made.1);
    let rerun = made.1["id"].as_i64().unwrap();
    let f = &m.wait_all(&[rerun], Duration::from_secs(60))[0];
    assert_eq!(f["state"], "failed", "{f}");
    let why = f["outcome"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("no longer tagged as an allowed image"), "{f}");
}
