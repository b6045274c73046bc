//! The master follows hand edits of runners.toml without a restart.

mod common;

use common::{sh, Master};
use serde_json::Value;
use std::time::{Duration, Instant};

fn runner(name: &str, slots: u32) -> String {
    format!(
        "[[runner]]\nname = \"{name}\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = {slots}\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n\n"
    )
}

fn runners(m: &Master) -> Value {
    m.get("/runners")
}

fn wait_for(m: &Master, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = runners(m);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn named<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["runners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
}

fn edit(m: &Master, text: &str) {
    std::fs::write(m.inventory.as_ref().unwrap(), text).unwrap();
}

#[test]
fn edits_are_followed_and_bad_edits_keep_the_previous_inventory() {
    let m = Master::start(Some(&runner("a", 2)));
    wait_for(&m, "a ready", |v| {
        named(v, "a").is_some_and(|r| r["state"] == "ready")
    });

    // Add a runner: it is connected.
    edit(&m, &(runner("a", 2) + &runner("b", 3)));
    wait_for(&m, "b added and ready", |v| {
        named(v, "b").is_some_and(|r| r["state"] == "ready")
    });

    // Change slots: applies at once.
    edit(&m, &(runner("a", 1) + &runner("b", 3)));
    wait_for(&m, "a has 1 slot", |v| {
        named(v, "a").is_some_and(|r| r["slots_total"] == 1)
    });

    // An invalid edit is rejected with file, line and key; the previous inventory stays.
    edit(
        &m,
        &(runner("a", 1) + &runner("b", 3) + "[[runner]]\nname = \"c\"\nslots = \"many\"\n"),
    );
    let v = wait_for(&m, "edit rejected", |v| v["inventory_error"].is_string());
    let err = v["inventory_error"].as_str().unwrap();
    assert!(
        err.contains("runners.toml:") && err.contains("slots"),
        "{err}"
    );
    assert!(named(&v, "c").is_none());
    assert_eq!(named(&v, "b").unwrap()["slots_total"], 3);
    let status = m.cli_ok(&["runners", "status"]);
    assert!(status.contains("inventory edit rejected"), "{status}");
    let out = m.cli(&["runners", "reload"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("slots"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Fixing the file clears the error.
    edit(&m, &(runner("a", 1) + &runner("b", 3)));
    wait_for(&m, "error cleared", |v| v["inventory_error"].is_null());
}

#[test]
fn a_removed_runner_drains_its_running_folds_then_goes() {
    let m = Master::start(Some(&runner("a", 1)));
    let ids = m.submit(vec![sh("sleep 2; echo ok > $DATARUN_OUTPUT/out")]);
    m.wait_state(ids[0], "running", Duration::from_secs(20));
    edit(&m, &runner("b", 1));
    let v = wait_for(&m, "a draining", |v| {
        named(v, "a").is_some_and(|r| r["state"].as_str().unwrap().contains("removed"))
    });
    assert!(named(&v, "b").is_some());
    // New folds go to b, not to the draining a.
    let more = m.submit(vec![sh("true")]);
    let f = m.wait_all(&more, Duration::from_secs(20));
    assert_eq!(f[0]["runner"], "b");
    let f = m.wait_all(&ids, Duration::from_secs(20));
    assert_eq!(f[0]["state"], "done", "the running fold finished: {}", f[0]);
    assert_eq!(f[0]["runner"], "a");
    wait_for(&m, "a gone", |v| named(v, "a").is_none());
}

#[test]
fn drain_and_resume() {
    let m = Master::start(Some(&runner("a", 2)));
    wait_for(&m, "a ready", |v| {
        named(v, "a").is_some_and(|r| r["state"] == "ready")
    });
    m.cli_ok(&["runners", "drain", "a"]);
    let ids = m.submit(vec![sh("true")]);
    std::thread::sleep(Duration::from_millis(800));
    let shown = m.fold(ids[0]);
    assert_eq!(shown["fold"]["state"], "idle");
    let why = shown["why_pending"]["summary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
        + &shown["why_pending"]["rejections"].to_string();
    assert!(why.contains("drained"), "{why}");
    m.cli_ok(&["runners", "resume", "a"]);
    let f = m.wait_all(&ids, Duration::from_secs(20));
    assert_eq!(f[0]["state"], "done");
    let out = m.cli(&["runners", "drain", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no runner named"));
}

#[test]
fn sighup_reloads() {
    let mut m = Master::start(Some(&(runner("a", 1) + &runner("y", 1))));
    wait_for(&m, "y ready", |v| {
        named(v, "y").is_some_and(|r| r["state"] == "ready")
    });
    // Same size and restored mtime: the poller sees no change, so SIGHUP must do the work.
    let path = m.inventory.clone().unwrap();
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, runner("a", 1) + &runner("z", 1)).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(before).unwrap();
    let pid = m.child.as_mut().unwrap().id();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        named(&runners(&m), "z").is_none(),
        "the poller must not have seen this edit"
    );
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    wait_for(&m, "z added by SIGHUP", |v| named(v, "z").is_some());
}
