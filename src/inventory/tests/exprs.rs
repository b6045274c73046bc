//! `requirements` and `attributes`: parsed, checked with located errors, inherited from
//! `[defaults]`.

use super::*;
use crate::expr::AttrValue;

#[test]
fn requirements_and_attributes_parse_and_inherit() {
    let inv = ok(r#"[defaults]
transport = "local"
requirements = 'owner != "guest" || queue == "L"'
attributes = { disk = "ssd", generation = 3 }

[[runner]]
name = "a"

[[runner]]
name = "b"
requirements = "priority >= 0"
attributes = { fast = true, ratio = 0.5, rack = "r1" }

[[runner]]
name = "c"
[runner.attributes]
generation = 4
"#);
    let a = inv.runner("a").unwrap();
    assert_eq!(
        a.requirements.as_deref(),
        Some("owner != \"guest\" || queue == \"L\"")
    );
    assert_eq!(
        a.attributes,
        BTreeMap::from([
            ("disk".to_string(), AttrValue::Str("ssd".into())),
            ("generation".to_string(), AttrValue::Int(3)),
        ])
    );
    let b = inv.runner("b").unwrap();
    assert_eq!(b.requirements.as_deref(), Some("priority >= 0"));
    assert_eq!(
        b.attributes,
        BTreeMap::from([
            ("fast".to_string(), AttrValue::Bool(true)),
            ("rack".to_string(), AttrValue::Str("r1".into())),
            ("ratio".to_string(), AttrValue::Float(0.5)),
        ])
    );
    // A runner's own table replaces the default one as a whole, like every other key.
    let c = inv.runner("c").unwrap();
    assert_eq!(
        c.attributes,
        BTreeMap::from([("generation".to_string(), AttrValue::Int(4))])
    );
    assert!(c.requirements.is_some());
    // Shown by `inventory check --json`.
    let json = serde_json::to_value(&inv).unwrap();
    assert_eq!(json["runners"][1]["attributes"]["ratio"], 0.5);
    assert_eq!(
        json["runners"][0]["requirements"],
        "owner != \"guest\" || queue == \"L\""
    );
}

#[test]
fn bad_requirements_and_attributes_name_line_key_and_column() {
    // (text after a local runner's first lines, line, key, message)
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "requirements = 'owner != \"guest\" ||'\n",
            4,
            "runner.requirements",
            "column 20: expected an expression after '||' (in \"owner != \\\"guest\\\" ||\")",
        ),
        (
            "requirements = \"colour == 1\"\n",
            4,
            "runner.requirements",
            "column 1: folds have no attribute 'colour' (they have: owner, queue, priority, cpus, memory, gpus, image) (in \"colour == 1\")",
        ),
        (
            "requirements = 3\n",
            4,
            "runner.requirements",
            "expected a string, found an integer",
        ),
        (
            "attributes = { memory = 3 }\n",
            4,
            "runner.attributes.memory",
            "\"memory\" is a built-in runner attribute; a custom attribute may not shadow it",
        ),
        (
            "attributes = { \"fast-disk\" = true }\n",
            4,
            "runner.attributes.fast-disk",
            "\"fast-disk\" is not a valid attribute name (letters, digits and '_', not starting with a digit)",
        ),
        (
            "attributes = { racks = [\"a\"] }\n",
            4,
            "runner.attributes.racks",
            "expected a string, an integer, a number or a boolean, found an array",
        ),
        (
            "attributes = \"ssd\"\n",
            4,
            "runner.attributes",
            "expected a table such as { disk = \"ssd\", generation = 3 }, found a string",
        ),
        ("\n[runner.attributes]\nfold = 1\n", 6, "runner.attributes.fold", "\"fold\" is a reserved word"),
    ];
    for &(extra, line, key, message) in cases {
        let text = format!("{LOCAL}{extra}");
        let err = parse(&text, "runners.toml").expect_err(&text);
        assert_eq!(
            (err.line, err.key.as_str(), err.message.as_str()),
            (line, key, message),
            "{text}"
        );
    }
    // In [defaults] too.
    let err = parse(
        &format!("[defaults]\nrequirements = \"owner ==\"\n{LOCAL}"),
        "runners.toml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "runners.toml:2: defaults.requirements: column 9: expected an expression after '==' (in \"owner ==\")"
    );
}
