//! `datarun queue analyze`: each rejection kind, the empty pool, the place in line.

mod common;

use common::{sh, Master};
use serde_json::{json, Value};
use std::time::Duration;

const RUNNER: &str = "[[runner]]\nname = \"one\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 1\ncpus = 2\nmemory = \"2G\"\ngpus = [\"0\"]\nqueues = [\"default\"]\nhard_time_limit = \"1h\"\n";

fn analyze(m: &Master, id: i64) -> (Value, String) {
    let v: Value =
        serde_json::from_str(&m.cli_ok(&["queue", "analyze", &id.to_string(), "--json"])).unwrap();
    (v, m.cli_ok(&["queue", "analyze", &id.to_string()]))
}

fn step<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap()
}

#[test]
fn every_rejection_kind_is_explained() {
    let m = Master::start(Some(RUNNER));
    let with = |patch: Value| {
        let mut f = sh("true");
        for (k, v) in patch.as_object().unwrap() {
            if k == "resources" {
                for (rk, rv) in v.as_object().unwrap() {
                    f["resources"][rk] = rv.clone();
                }
            } else {
                f[k] = v.clone();
            }
        }
        f
    };
    let cases = [
        (
            with(json!({"queue": "gpu"})),
            "queue",
            "does not serve queue \"gpu\"",
        ),
        (with(json!({"resources": {"memory": "4G"}})), "memory", "4G"),
        (with(json!({"resources": {"cpus": 4}})), "cpus", "4"),
        (with(json!({"resources": {"gpus": 2}})), "gpus", "2"),
        (with(json!({"hard_time_limit": "2h"})), "time_limit", "2h"),
    ];
    let ids = m.submit(cases.iter().map(|c| c.0.clone()).collect());
    for ((_, step_name, needle), id) in cases.iter().zip(&ids) {
        let (v, text) = analyze(&m, *id);
        let s = step(&v, step_name);
        assert_eq!(s["rejected"], 1, "{step_name}: {v}");
        let why: Vec<&str> = s["why"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w.as_str())
            .collect();
        let why = why.join("; ");
        assert!(why.contains(needle), "{step_name}: {needle:?} not in {why}");
        assert_eq!(
            v["matches_empty_pool"], false,
            "{step_name} can never match: {v}"
        );
        assert!(text.contains("never run on this pool"), "{text}");
    }
    // Waiting for a slot: it would match an empty pool, and it is next in line.
    let busy = m.submit(vec![sh("sleep 30")]);
    m.wait_state(busy[0], "running", Duration::from_secs(20));
    let waiting = m.submit(vec![sh("true"), sh("true")]);
    let (v, text) = analyze(&m, waiting[0]);
    assert_eq!(step(&v, "slots")["rejected"], 1, "{v}");
    assert_eq!(v["matches_empty_pool"], true);
    assert_eq!(v["place_in_line"], 0);
    assert!(text.contains("Place in line: 1 of 2"), "{text}");
    let (v, _) = analyze(&m, waiting[1]);
    assert_eq!(v["place_in_line"], 1);
    // A drained runner fails the first step.
    m.cli_ok(&["runners", "drain", "one"]);
    let (v, _) = analyze(&m, waiting[0]);
    assert_eq!(step(&v, "available")["rejected"], 1, "{v}");
    assert!(
        step(&v, "available")["why"].to_string().contains("drained"),
        "{v}"
    );
    m.cli_ok(&["queue", "remove", &busy[0].to_string()]);
}

/// The table agrees with the summary: a fold asking 4G of a 2G runner whose one slot is busy
/// is rejected for memory (what the runner has in all), not for the slot, as the summary says.
#[test]
fn the_table_blames_what_the_summary_blames() {
    let m = Master::start(Some(RUNNER));
    let busy = m.submit(vec![sh("sleep 30")]);
    m.wait_state(busy[0], "running", Duration::from_secs(20));
    let mut big = sh("true");
    big["resources"]["memory"] = json!("4G");
    let big = m.submit(vec![big])[0];
    let (v, text) = analyze(&m, big);
    assert_eq!(v["state"], "held", "{v}");
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.contains("memory"), "{summary}");
    assert!(
        summary.starts_with("held (") && summary.contains("releasing it would not help"),
        "{summary}"
    );
    assert_eq!(step(&v, "slots")["rejected"], 0, "{v}");
    assert_eq!(step(&v, "memory")["rejected"], 1, "{v}");
    assert!(
        step(&v, "memory")["why"][0]
            .as_str()
            .unwrap()
            .contains("has 2G in all, fold asks 4G"),
        "{v}"
    );
    let memory_row = text
        .lines()
        .find(|l| l.starts_with("memory"))
        .unwrap()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>();
    assert_eq!(memory_row, ["memory", "0", "1"], "{text}");
    // A fold that fits but waits for the slot is still rejected at the slot, as free.
    let small = m.submit(vec![sh("true")])[0];
    let (v, _) = analyze(&m, small);
    assert_eq!(step(&v, "slots")["rejected"], 1, "{v}");
    assert_eq!(step(&v, "memory")["rejected"], 0, "{v}");
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("waiting for free resources"),
        "{v}"
    );
    // Drained (unavailable) and too small: still memory, what would stop it once resumed;
    // the fold that fits is stopped by the drain.
    m.cli_ok(&["runners", "drain", "one"]);
    let (v, _) = analyze(&m, big);
    assert_eq!(step(&v, "available")["rejected"], 0, "{v}");
    assert_eq!(step(&v, "memory")["rejected"], 1, "{v}");
    assert!(v["summary"].as_str().unwrap().contains("memory"), "{v}");
    let (v, _) = analyze(&m, small);
    assert_eq!(step(&v, "available")["rejected"], 1, "{v}");
    assert_eq!(step(&v, "memory")["rejected"], 0, "{v}");
    let mut elsewhere = sh("true");
    elsewhere["queue"] = json!("gpu");
    let elsewhere = m.submit(vec![elsewhere])[0];
    let (v, _) = analyze(&m, elsewhere);
    assert_eq!(step(&v, "available")["rejected"], 0, "{v}");
    assert_eq!(step(&v, "queue")["rejected"], 1, "{v}");
    assert!(v["summary"].as_str().unwrap().contains("queue"), "{v}");
    m.cli_ok(&["queue", "remove", &busy[0].to_string()]);
}

/// Only a waiting fold gets the pool's answer: running, done, failed, removed and held folds
/// say what they are, never "can run now".
#[test]
fn folds_that_do_not_wait_say_so() {
    let m = Master::start(Some(RUNNER));
    let running = m.submit(vec![sh("sleep 30")])[0];
    m.wait_state(running, "running", Duration::from_secs(20));
    let (v, text) = analyze(&m, running);
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("running on runner one"),
        "{v}"
    );
    assert!(
        !text.contains("can run now") && !text.contains("STEP"),
        "{text}"
    );
    // A fold waiting on the running one is not in line yet, and says so.
    let mut child = sh("true");
    child["after"] = json!([{ "fold": running }]);
    let child = m.submit(vec![child])[0];
    let (v, text) = analyze(&m, child);
    assert_eq!(v["state"], "waiting", "{v}");
    assert!(v["summary"].as_str().unwrap().starts_with("waiting"), "{v}");
    assert!(
        !text.contains("can run now") && !text.contains("STEP"),
        "{text}"
    );
    m.cli_ok(&["queue", "remove", &running.to_string()]);
    let (v, text) = analyze(&m, running);
    assert!(v["summary"].as_str().unwrap().starts_with("removed"), "{v}");
    assert!(!text.contains("can run now"), "{text}");

    let mut failing = sh("exit 3");
    failing["max_retries"] = json!(0);
    let ids = m.submit(vec![sh("true"), failing]);
    m.wait_all(&ids, Duration::from_secs(20));
    for (id, state) in ids.iter().zip(["done", "failed"]) {
        let (v, text) = analyze(&m, *id);
        assert_eq!(v["state"], state, "{v}");
        assert!(v["summary"].as_str().unwrap().starts_with(state), "{v}");
        assert!(!text.contains("can run now"), "{text}");
        assert!(text.contains(&format!("In short: {state}")), "{text}");
    }

    // Held by hand on an idle pool: it says it is held, then what a release would do.
    let held = m.submit(vec![sh("sleep 30")])[0];
    m.cli_ok(&["queue", "hold", &held.to_string()]);
    m.wait_state(held, "held", Duration::from_secs(20));
    let (v, text) = analyze(&m, held);
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.starts_with("held"), "{summary}");
    assert!(
        summary.contains(&format!("datarun queue release {held}")),
        "{summary}"
    );
    assert!(text.contains("In short: held"), "{text}");
}
