//! Requirements and rank end to end: submitted over HTTP (syntax errors are 400 with the
//! column), matched against an inventory of two local runners with different labels,
//! attributes and requirements, explained by `queue analyze`, and held at submit when no
//! runner could ever meet them.

mod common;

use common::{sh, Master};
use serde_json::{json, Value};
use std::time::Duration;

/// fast: 2G, fast-disk, disk = "ssd", generation 3, refuses folds of negative priority
/// outside queue L. slow: 4G, disk = "hdd", generation 1.
const INVENTORY: &str = r#"
[defaults]
transport = "local"
executor = "process"
slots = 2
cpus = 2
queues = ["default", "L"]

[[runner]]
name = "fast"
memory = "2G"
labels = ["fast-disk"]
attributes = { disk = "ssd", generation = 3 }
requirements = 'priority >= 0 || queue == "L"'

[[runner]]
name = "slow"
memory = "4G"
attributes = { disk = "hdd", generation = 1 }
"#;

fn with(requirements: Option<&str>, rank: Option<&str>) -> Value {
    let mut f = sh("true");
    if let Some(r) = requirements {
        f["requirements"] = json!(r);
    }
    if let Some(r) = rank {
        f["rank"] = json!(r);
    }
    f
}

fn analyze_step(m: &Master, id: i64, name: &str) -> (u64, String) {
    let v: Value =
        serde_json::from_str(&m.cli_ok(&["queue", "analyze", &id.to_string(), "--json"])).unwrap();
    let s = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {v}"));
    let why: Vec<&str> = s["why"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    (s["rejected"].as_u64().unwrap(), why.join("; "))
}

#[test]
fn requirements_and_rank_route_folds_and_explain_refusals() {
    let m = Master::start(Some(INVENTORY));
    // Placement by rank needs both runners in the first cycle.
    m.wait_ready(2);

    // Syntax errors: 400 with the column, nothing stored (single and batch).
    let (status, v) = m.request("POST", "/folds", Some(with(Some("gpus >= 1 &&"), None)));
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"]["message"], "requirements: column 13: expected an expression after '&&'",
        "{v}"
    );
    let (status, v) = m.request(
        "POST",
        "/folds/batch",
        Some(json!({"folds": [with(None, None), with(None, Some("memory >"))]})),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"]["message"], "fold 1: rank: column 9: expected an expression after '>'",
        "{v}"
    );
    assert_eq!(m.get("/folds")["folds"].as_array().unwrap().len(), 0);

    // Folds routed by requirements and rank; each runner has 2 slots, so four fit at once.
    let ids = m.submit(vec![
        with(Some("\"fast-disk\" in labels"), None),
        with(Some("disk == \"hdd\" && generation < 2"), None),
        with(None, Some("memory")),
        with(Some("generation >= 3"), Some("memory")),
    ]);
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    let ran: Vec<(&str, &str)> = folds
        .iter()
        .map(|f| {
            (
                f["state"].as_str().unwrap(),
                f["runner"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        ran,
        vec![
            ("done", "fast"),
            ("done", "slow"),
            ("done", "slow"),
            ("done", "fast")
        ],
        "{folds:?}"
    );
    assert_eq!(folds[0]["spec"]["requirements"], "\"fast-disk\" in labels");
    assert_eq!(folds[2]["spec"]["rank"], "memory");

    // Through the CLI, too.
    let out = m.cli_ok(&[
        "submit",
        "--requirements",
        "name == \"slow\"",
        "--rank",
        "-memory",
        "--memory",
        "64M",
        "--cpus",
        "0.1",
        "--",
        "true",
    ]);
    let id: i64 = out.trim().parse().unwrap();
    let f = &m.wait_all(&[id], Duration::from_secs(60))[0];
    assert_eq!(
        (f["state"].as_str(), f["runner"].as_str()),
        (Some("done"), Some("slow")),
        "{f}"
    );
    let out = m.cli(&["submit", "--requirements", "gpus >=", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("requirements: column 8: expected an expression after '>='"),
        "{err}"
    );

    // Never: held at submit, with the code and the reason, and explained by analyze.
    let mut refused = with(Some("generation >= 3"), None);
    refused["priority"] = json!(-5);
    let (status, v) = m.request(
        "POST",
        "/folds/batch",
        Some(json!({"folds": [
            with(Some("gpus >= 1"), None),
            refused,
            with(Some("memory > \"big\""), None),
        ]})),
    );
    assert_eq!(status, 201, "{v}");
    let held: Vec<(i64, &str, &str)> = v["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_i64().unwrap(),
                h["code"].as_str().unwrap(),
                h["reason"].as_str().unwrap(),
            )
        })
        .collect();
    let ids = common::ints(&v["ids"]);
    assert_eq!(
        held,
        vec![
            (ids[0], "unmatchable", "requirements: 2 runners fail (gpus >= 1: gpus is 0 on 2)"),
            (ids[1], "unmatchable", "requirements: 1 runner fails (generation >= 3: generation is 1 on 1); runner requirements: fast refuses (priority >= 0 || queue == \"L\")"),
            (ids[2], "requirements", "requirements: cannot be evaluated on 2 runners (memory > \"big\": cannot order an integer and a string on 2)"),
        ]
    );
    for id in &ids {
        assert_eq!(m.fold(*id)["fold"]["state"], "held");
    }
    // analyze: each rejection kind on its own step.
    assert_eq!(
        analyze_step(&m, ids[0], "requirements"),
        (
            2,
            "requirements: 2 runners fail (gpus >= 1: gpus is 0 on 2)".into()
        )
    );
    assert_eq!(
        analyze_step(&m, ids[1], "requirements"),
        (
            1,
            "requirements: 1 runner fails (generation >= 3: generation is 1 on 1)".into()
        )
    );
    assert_eq!(
        analyze_step(&m, ids[1], "runner_requirements"),
        (
            1,
            "runner requirements: fast refuses (priority >= 0 || queue == \"L\")".into()
        )
    );
    assert_eq!(analyze_step(&m, ids[2], "requirements").0, 2);
    let text = m.cli_ok(&["queue", "analyze", &ids[2].to_string()]);
    assert!(
        text.contains("cannot order an integer and a string"),
        "{text}"
    );
    assert!(text.contains("never run on this pool"), "{text}");
    // The same fold in queue L is fine with fast.
    let mut in_l = with(Some("generation >= 3"), None);
    in_l["priority"] = json!(-5);
    in_l["queue"] = json!("L");
    let ids = m.submit(vec![in_l]);
    let f = &m.wait_all(&ids, Duration::from_secs(60))[0];
    assert_eq!(
        (f["state"].as_str(), f["runner"].as_str()),
        (Some("done"), Some("fast")),
        "{f}"
    );
}
