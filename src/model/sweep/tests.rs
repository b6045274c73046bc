//! The sweep document, its points, metrics and ranking.

use super::*;
use serde_json::json;

#[test]
fn grid_times_samples_seeded_and_checked() {
    let doc = json!({
        "grid": {"lr": [0.1, 0.01], "depth": [2, 4, 8]},
        "random": {"n": 2, "seed": 7, "x": {"uniform": [-5, 5]}, "y": {"log_uniform": [1e-4, 1]}, "k": {"choice": ["a", "b"]}},
        "stop": {"metric": "loss", "below": 0.01},
        "cap": 3
    });
    let s = from_json(&doc).unwrap();
    assert_eq!(s.points.len(), 12);
    assert_eq!(s.cap, Some(3));
    assert_eq!(s.names.len(), 5);
    assert_eq!(
        from_json(&doc).unwrap(),
        s,
        "the same seed draws the same points"
    );
    // The last grid parameter (by name: lr) varies fastest; samples inside.
    assert_eq!(s.points[0]["depth"], 2);
    assert_eq!(s.points[0]["lr"], 0.1);
    assert_eq!(s.points[2]["lr"], 0.01);
    assert_eq!(s.points[4]["depth"], 4);
    for p in &s.points {
        let x = p["x"].as_f64().unwrap();
        let y = p["y"].as_f64().unwrap();
        assert!(
            (-5.0..5.0).contains(&x) && (1e-4..1.0).contains(&y),
            "{p:?}"
        );
        assert!(p["k"] == "a" || p["k"] == "b");
    }
    assert_ne!(s.points[0]["x"], s.points[1]["x"]);
    let stop = s.stop.unwrap();
    let m = |v: f64| BTreeMap::from([("loss".to_string(), v)]);
    assert_eq!(stop.reached(&m(0.001)), Some(0.001));
    assert_eq!(stop.reached(&m(0.1)), None);
    let above = StopRule {
        metric: "loss".into(),
        below: None,
        above: Some(0.5),
    };
    assert_eq!(above.reached(&m(0.6)), Some(0.6));
    assert_eq!(above.reached(&m(0.5)), None);
    assert_eq!(above.reached(&BTreeMap::new()), None);
    assert_eq!(above.describe(), "loss above 0.5");
    assert_eq!(env_name("lr"), "DATARUN_PARAM_LR");
    assert_eq!(env_value(&json!(0.01)), "0.01");
    assert_eq!(env_value(&json!("adam")), "adam");
}

#[test]
fn bad_documents_name_the_key() {
    for (doc, key, says) in [
        (json!({}), "", "give parameters"),
        (json!({"grid": {"lr": []}}), "grid.lr", "non-empty"),
        (
            json!({"grid": {"1x": [1]}}),
            "grid.1x",
            "not a parameter name",
        ),
        (
            json!({"grid": {"a": [1], "A": [2]}}),
            "grid.a",
            "same variable",
        ),
        (json!({"grid": {"a": [[1]]}}), "grid.a[0]", "found an array"),
        (
            json!({"grid": {"a": ["x".repeat(2000)]}}),
            "grid.a[0]",
            "over the limit",
        ),
        (
            json!({"random": {"n": 3, "x": {"uniform": [0, 1]}}}),
            "random.seed",
            "give a seed",
        ),
        (
            json!({"random": {"n": 0, "seed": 1, "x": {"uniform": [0, 1]}}}),
            "random.n",
            "from 1",
        ),
        (
            json!({"random": {"n": 1, "seed": 1, "x": {"uniform": [1, 0]}}}),
            "random.x.uniform",
            "not below",
        ),
        (
            json!({"random": {"n": 1, "seed": 1, "x": {"log_uniform": [0, 1]}}}),
            "random.x.log_uniform",
            "above 0",
        ),
        (
            json!({"random": {"n": 1, "seed": 1, "x": {"normal": [0, 1]}}}),
            "random.x.normal",
            "unknown distribution",
        ),
        (
            json!({"random": {"n": 1, "seed": 1}}),
            "random",
            "at least one parameter",
        ),
        (
            json!({"grid": {"a": [1]}, "stop": {"metric": "l"}}),
            "stop",
            "one of below or above",
        ),
        (
            json!({"grid": {"a": [1]}, "stpo": {}}),
            "stpo",
            "unknown key",
        ),
        (
            json!({"grid": {"a": (0..101).collect::<Vec<_>>(), "b": (0..100).collect::<Vec<_>>()}}),
            "grid.b",
            "more than 10000",
        ),
        (
            json!({"grid": {"a": [1, 2]}, "random": {"n": 5001, "seed": 1, "x": {"uniform": [0, 1]}}}),
            "random.n",
            "over the limit",
        ),
    ] {
        let e = from_json(&doc).unwrap_err();
        assert_eq!(e.key, key, "{doc}: {e}");
        assert!(e.message.contains(says), "{doc}: {e}");
    }
    let many: Map<String, Value> = (0..33).map(|i| (format!("p{i}"), json!([1]))).collect();
    let e = from_json(&json!({ "grid": many })).unwrap_err();
    assert!(e.message.contains("more than 32 parameters"), "{e}");
}

#[test]
fn metrics_and_ranking() {
    let a = parse_metrics(br#"{"loss": 2.5, "acc": 1, "note": "x"}"#).unwrap();
    assert_eq!(a.len(), 2);
    assert!(parse_metrics(b"[1]").is_none());
    let b = BTreeMap::from([("loss".to_string(), 0.5)]);
    let c = BTreeMap::from([("acc".to_string(), 0.5)]);
    let all = [Some(&a), None, Some(&b), Some(&c)];
    assert_eq!(rank(&all, "loss", false), vec![2, 0, 1, 3]);
    assert_eq!(rank(&all, "loss", true), vec![0, 2, 1, 3]);
}
