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
