//! Folds in Docker containers through the real master and agent, against the real engine.
//! These tests need Docker; they fail (never skip) when it is missing.

mod common;

use common::Master;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

use common::BUSYBOX;

/// An inventory with one docker runner named `name` (unique per test: tests share the engine).
fn docker_runner(name: &str) -> String {
    common::ensure_image("build-busybox.sh", BUSYBOX);
    format!(
        r#"
[[runner]]
name = "{name}"
transport = "local"
executor = "docker"
images = ["{BUSYBOX}", "datarun/fold-python:0.1"]
slots = 4
cpus = 4
memory = "4G"
queues = ["*"]
"#
    )
}

fn fold(script: &str) -> Value {
    json!({ "command": ["sh", "-c", script], "image": BUSYBOX, "resources": {"cpus": 0.5, "memory": "128M"} })
}

fn outcome(f: &Value) -> String {
    f["outcome"]["kind"].as_str().unwrap_or("").to_string()
}

#[test]
fn folds_run_confined_in_containers() {
    let m = Master::start(Some(&docker_runner("confined")));
    let probe = fold(
        "id -u > $DATARUN_OUTPUT/uid; \
         cat $DATARUN_INPUT/in.txt > $DATARUN_OUTPUT/echo; \
         (touch /x 2>/dev/null && echo yes || echo no) > $DATARUN_OUTPUT/rootfs_writable; \
         (touch $DATARUN_INPUT/y 2>/dev/null && echo yes || echo no) > $DATARUN_OUTPUT/input_writable; \
         ls /sys/class/net > $DATARUN_OUTPUT/net; \
         (wget -q -T 2 -O- http://1.1.1.1 >/dev/null 2>&1 && echo yes || echo no) > $DATARUN_OUTPUT/network",
    );
    let (status, blob) = m.raw(
        "POST",
        "/blobs",
        "application/octet-stream",
        b"hello input".to_vec(),
    );
    assert_eq!(status, 201);
    let mut probe = probe;
    probe["inputs"] = json!([{"name": "in.txt", "sha256": blob["sha256"]}]);
    let mut oom = fold("x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo ${#x}");
    oom["resources"]["memory"] = json!("64M");
    let mut soft = fold("sleep 30");
    soft["soft_time_limit"] = json!("1s");
    let plain = json!({ "command": ["true"], "resources": {"cpus": 0.5, "memory": "64M"} });
    let ids = m.submit(vec![probe, oom, soft, plain]);
    let folds = m.wait_all(&ids, Duration::from_secs(120));
    assert_eq!(folds[0]["state"], "done", "{}", folds[0]);
    let out = |name: &str| {
        m.cli_ok(&["fold", "output", &ids[0].to_string(), name])
            .trim()
            .to_string()
    };
    assert_eq!(out("uid"), "1000", "folds never run as root");
    assert_eq!(out("echo"), "hello input");
    assert_eq!(out("rootfs_writable"), "no");
    assert_eq!(out("input_writable"), "no");
    assert_eq!(out("net"), "lo", "only loopback inside the fold");
    assert_eq!(out("network"), "no");
    assert_eq!(outcome(&folds[1]), "out_of_memory", "{}", folds[1]);
    assert_eq!(outcome(&folds[2]), "timed_out_soft", "{}", folds[2]);
    // A fold naming no image runs the runner's default image (the first it allows).
    assert_eq!(folds[3]["state"], "done", "{}", folds[3]);
    // No container is left behind.
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=datarun.runner=confined"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "containers left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn images_are_limited_to_the_runners_allowlist() {
    let m = Master::start(Some(&docker_runner("allowlist")));
    let mut evil = fold("true");
    evil["image"] = json!("evil/escape:latest");
    let (status, v) = m.request("POST", "/folds", Some(evil));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["held"][0]["code"], "unmatchable", "{v}");
    let reason = v["held"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("evil/escape:latest"), "{reason}");
}

#[test]
fn a_missing_image_fails_with_a_clear_outcome() {
    let inv =
        docker_runner("missing").replace(r#"images = ["#, r#"images = ["datarun/not-loaded:1", "#);
    let m = Master::start(Some(&inv));
    let mut f = fold("true");
    f["image"] = json!("datarun/not-loaded:1");
    let ids = m.submit(vec![f]);
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    let msg = folds[0]["outcome"]["message"].as_str().unwrap_or_default();
    assert_eq!(outcome(&folds[0]), "image_missing", "{}", folds[0]);
    assert_eq!(
        (folds[0]["state"].as_str(), folds[0]["hold_code"].as_str()),
        (Some("held"), Some("bad_image"))
    );
    assert!(
        msg.contains("datarun/not-loaded:1") && msg.contains("datarun image load"),
        "{msg}"
    );
}

#[test]
fn a_restarted_agent_readopts_its_running_container() {
    let m = Master::start(Some(&docker_runner("box")));
    let ids = m.submit(vec![fold("sleep 4; echo finished > $DATARUN_OUTPUT/done")]);
    m.wait_state(ids[0], "running", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    // kill -9 the agent (not the master): the container keeps running in the engine.
    let pattern = format!(
        "agent --stdio --state-dir {}",
        m.data_dir().join("agents/box").display()
    );
    let killed = Command::new("pkill")
        .args(["-9", "-f", &pattern])
        .status()
        .unwrap();
    assert!(killed.success(), "no agent process matched {pattern}");
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    assert_eq!(folds[0]["state"], "done", "{}", folds[0]);
    let shown = m.fold(ids[0]);
    assert_eq!(
        shown["attempts"].as_array().unwrap().len(),
        1,
        "re-adopted, not rerun: {}",
        shown["attempts"]
    );
    assert_eq!(
        m.cli_ok(&["fold", "output", &ids[0].to_string(), "done"])
            .trim(),
        "finished"
    );
    assert!(
        shown["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "readopted"),
        "{}",
        shown["events"]
    );
}

#[test]
fn a_readopted_container_whose_agent_dies_is_adopted_again_not_rerun() {
    let mut m = Master::start(Some(&docker_runner("readopt-box")));
    let mut f = fold("sleep 5; echo finished > $DATARUN_OUTPUT/done");
    // A retry would rerun it beside its container: it must be adopted, not given up.
    f["max_retries"] = json!(1);
    let id = m.submit(vec![f])[0];
    m.wait_state(id, "running", Duration::from_secs(30));
    let attempt = m.fold(id)["fold"]["current_attempt"].as_i64().unwrap();
    let old_agent = m.attempt_owner("readopt-box", attempt);
    // A master restart: the old agent keeps watching the container, the new one watches it.
    m.kill9();
    m.spawn();
    m.wait_event(id, "readopted", Duration::from_secs(30));
    // Then the old agent dies: the new one adopts the container itself.
    common::procs::kill9(old_agent);
    let folds = m.wait_all(&[id], Duration::from_secs(60));
    assert_eq!(folds[0]["state"], "done", "{}", folds[0]);
    let shown = m.fold(id);
    assert_eq!(
        shown["attempts"].as_array().unwrap().len(),
        1,
        "adopted again, not rerun: {}",
        shown["attempts"]
    );
    assert_eq!(
        m.cli_ok(&["fold", "output", &id.to_string(), "done"])
            .trim(),
        "finished"
    );
}

#[test]
fn a_mixed_pool_routes_folds_by_image() {
    let docker = docker_runner("mixed-box").replace(
        &format!(r#"images = ["{BUSYBOX}", "datarun/fold-python:0.1"]"#),
        r#"images = ["*"]"#,
    );
    let inv = format!(
        "{docker}\n[[runner]]\nname = \"mixed-proc\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 4\ncpus = 4\nmemory = \"4G\"\nqueues = [\"*\"]\n"
    );
    let m = Master::start(Some(&inv));
    let plain = json!({ "command": ["sh", "-c", "echo plain"], "resources": {"cpus": 0.5, "memory": "64M"} });
    let ids = m.submit(vec![
        fold("echo boxed"),
        plain.clone(),
        fold("echo boxed"),
        plain,
    ]);
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    let runners: Vec<&str> = folds
        .iter()
        .map(|f| f["runner"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        runners,
        ["mixed-box", "mixed-proc", "mixed-box", "mixed-proc"],
        "{folds:?}"
    );
    assert!(folds.iter().all(|f| f["state"] == "done"), "{folds:?}");
}

#[test]
fn a_container_writing_5_gb_of_outputs_is_killed_early_and_nothing_crosses_the_wire() {
    let m = Master::start(Some(&docker_runner("outputs-5g")));
    let before = m.stored_bytes();
    let ids = m.submit(vec![fold(
        "dd if=/dev/zero of=$DATARUN_OUTPUT/big bs=1048576 count=5000",
    )]);
    let folds = m.wait_all(&ids, Duration::from_secs(120));
    assert_eq!(folds[0]["state"], "failed", "{}", folds[0]);
    assert_eq!(outcome(&folds[0]), "output_limit", "{}", folds[0]);
    let written = folds[0]["outcome"]["bytes"].as_u64().unwrap();
    assert_eq!(folds[0]["outcome"]["limit"], 128u64 << 20);
    assert!(
        written < 2000 << 20,
        "killed early, long before 5 GB: {written} bytes"
    );
    let shown = m.fold(ids[0]);
    assert_eq!(shown["attempts"][0]["outputs"], json!([]), "{shown}");
    let grown = m.stored_bytes().saturating_sub(before);
    assert!(
        grown < 10 << 20,
        "database and blob files grew {grown} bytes"
    );
    let (master, agent) = (common::peak_rss(m.pid()), common::peak_rss(m.agent_pid()));
    assert!(master < 200 << 20, "master peak RSS {master}");
    assert!(agent < 200 << 20, "agent peak RSS {agent}");
    eprintln!(
        "5 GB container: killed after {written} bytes; peak RSS master {} MB, agent {} MB",
        master >> 20,
        agent >> 20
    );
}

/// The running warm containers of the agent serving runner `name`, by name
/// (`datarun-NS-warm-...`).
fn warm_containers(m: &Master, name: &str) -> Vec<String> {
    let dir = m.data_dir().join("agents").join(name);
    let dir = dir.canonicalize().unwrap_or(dir);
    let ns = &datarun::store::sha256_hex(dir.to_string_lossy().as_bytes())[..12];
    let out = Command::new("docker")
        .args([
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=datarun.namespace={ns}"),
            "--filter",
            "label=datarun.warm",
        ])
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|n| n.contains("-warm-"))
        .map(String::from)
        .collect();
    names.sort();
    names
}

fn await_warm(m: &Master, name: &str, n: usize, not: &[String]) -> Vec<String> {
    let t0 = std::time::Instant::now();
    loop {
        let names = warm_containers(m, name);
        if names.len() == n && names.iter().all(|w| !not.contains(w)) {
            // Running, and a moment later waiting in the agent's pool.
            std::thread::sleep(Duration::from_millis(300));
            return names;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never {n} new warm containers: {names:?} (old {not:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn warm_containers_run_folds_once_and_a_restarted_agent_leaves_none_behind() {
    // The warm command waits for its go, then runs the fold's script from its args.
    let wait = r#"if [ -n "$DATARUN_WARM" ]; then touch "$DATARUN_OUTPUT/.datarun-warm-ready"; until [ -e "$DATARUN_WARM" ]; do sleep 0.02; done; sed -n 's/.*"args":\["\([^"]*\)"\].*/\1/p' "$DATARUN_WARM" > /tmp/script; else echo "$0" > /tmp/script; fi; sh /tmp/script"#;
    let inventory = format!(
        "{}warm = {{ image = \"{BUSYBOX}\", command = [\"sh\", \"-c\", {wait:?}], count = 2, memory = \"64M\" }}\n",
        docker_runner("warm-box")
    );
    let m = Master::start(Some(&inventory));
    let first = await_warm(&m, "warm-box", 2, &[]);
    let warm_fold = |script: &str| {
        json!({ "command": ["sh", "-c", wait, script], "image": BUSYBOX,
                "resources": {"cpus": 0.5, "memory": "128M"} })
    };
    let ids = m.submit(vec![
        warm_fold("hostname > $DATARUN_OUTPUT/host; echo one"),
        warm_fold("hostname > $DATARUN_OUTPUT/host; echo two"),
    ]);
    let ended = m.wait_all(&ids, Duration::from_secs(60));
    let mut hosts = vec![];
    for (f, id) in ended.iter().zip(&ids) {
        assert_eq!(f["state"], "done", "{f}");
        hosts.push(m.cli_ok(&["fold", "output", &id.to_string(), "host"]));
    }
    assert_ne!(hosts[0], hosts[1], "one container per fold");
    assert_eq!(m.cli_ok(&["fold", "log", &ids[1].to_string()]), "two\n");
    // Both warm containers served a fold and are gone; two new ones wait.
    let second = await_warm(&m, "warm-box", 2, &first);
    // kill -9 the agent: the master starts a new one, which removes the idle containers of
    // the dead one and starts its own.
    let pattern = format!(
        "agent --stdio --state-dir {}",
        m.data_dir().join("agents/warm-box").display()
    );
    let killed = Command::new("pkill")
        .args(["-9", "-f", &pattern])
        .status()
        .unwrap();
    assert!(killed.success(), "no agent process matched {pattern}");
    let third = await_warm(&m, "warm-box", 2, &second);
    assert!(third.iter().all(|t| !first.contains(t)));
    let ids = m.submit(vec![warm_fold("echo three")]);
    let ended = m.wait_all(&ids, Duration::from_secs(60));
    assert_eq!(ended[0]["state"], "done", "{}", ended[0]);
    assert_eq!(m.cli_ok(&["fold", "log", &ids[0].to_string()]), "three\n");
}
