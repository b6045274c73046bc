//! `warm = { ... }` on docker runners: read whole, inherited from `[defaults]`, and every
//! mistake named by line and key.

use super::*;

const DOCKER: &str = "[[runner]]\nname = \"d\"\ntransport = \"local\"\nexecutor = \"docker\"\nimages = [\"datarun/fold-python:0.1\"]\n";

#[test]
fn warm_containers_are_read_with_their_memory_default() {
    let inv = ok(&format!(
        "{DOCKER}warm = {{ image = \"datarun/fold-python:0.1\", command = [\"datarun-ramp-fold\"], count = 3 }}\n"
    ));
    let warm = inv.runners[0].warm.clone().expect("warm");
    assert_eq!(
        warm,
        WarmSpec {
            image: "datarun/fold-python:0.1".into(),
            command: vec!["datarun-ramp-fold".into()],
            count: 3,
            memory: DEFAULT_WARM_MEMORY,
        }
    );
    assert_eq!(warm.check(), Ok(()));
    let args = warm.agent_args();
    assert_eq!(args[0], "--warm");
    assert_eq!(serde_json::from_str::<WarmSpec>(&args[1]).unwrap(), warm);
    // Inherited from [defaults] like any key; a runner without one keeps none.
    let inv = ok(&format!(
        "[defaults]\nwarm = {{ image = \"datarun/fold-python:0.1\", command = [\"a\", \"b\"], count = 1, memory = \"1G\" }}\n{DOCKER}"
    ));
    let warm = inv.runners[0].warm.as_ref().unwrap();
    assert_eq!(
        (warm.count, warm.memory, warm.command.len()),
        (1, 1 << 30, 2)
    );
    assert_eq!(ok(DOCKER).runners[0].warm, None);
    // "*" allows any image, the warm one too.
    let any = DOCKER.replace("[\"datarun/fold-python:0.1\"]", "[\"*\"]");
    ok(&format!(
        "{any}warm = {{ image = \"x/y:1\", command = [\"a\"], count = 1 }}\n"
    ));
}

#[test]
fn warm_mistakes_name_their_line_and_key() {
    let with = |w: &str| format!("{DOCKER}{w}\n");
    let cases: Vec<(String, &str, &str)> = vec![
        (with("warm = 3"), "runner.warm", "expected a table such as { image"),
        (with("warm = { command = [\"a\"], count = 1 }"), "runner.warm", "missing image"),
        (with("warm = { image = \"datarun/fold-python:0.1\", count = 1 }"), "runner.warm", "missing command"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = [\"a\"] }"), "runner.warm", "missing count"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = [], count = 1 }"), "runner.warm.command", "must name the program"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = [\"\"], count = 1 }"), "runner.warm.command", "non-empty string"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = \"a\", count = 1 }"), "runner.warm.command", "expected a list of words"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = [\"a\"], count = 0 }"), "runner.warm.count", "0 is not between 1 and 16"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = [\"a\"], count = 17 }"), "runner.warm.count", "17 is not between 1 and 16"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = [\"a\"], count = 1, memory = \"1M\" }"), "runner.warm.memory", "less than 16"),
        (with("warm = { image = \"datarun/fold-python:0.1\", command = [\"a\"], count = 1, cpus = 2 }"), "runner.warm.cpus", "unknown key \"cpus\"; warm takes: image, command, count, memory"),
        (with("warm = { image = \"*\", command = [\"a\"], count = 1 }"), "runner.warm.image", "never \"*\""),
        (with("warm = { image = \"other/img:1\", command = [\"a\"], count = 1 }"), "runner.warm.image", "\"other/img:1\" is not among runner \"d\"'s images (datarun/fold-python:0.1)"),
        (
            format!("{LOCAL}executor = \"process\"\n\nwarm = {{ image = \"datarun/fold-python:0.1\", command = [\"a\"], count = 1 }}\n"),
            "runner.warm",
            "only docker runners keep warm containers",
        ),
    ];
    for (text, key, message) in cases {
        let e = parse(&text, "inv.toml").expect_err(&text);
        assert_eq!(e.key, key, "{text}\n{e}");
        assert!(e.message.contains(message), "{text}\n{e}");
        assert_eq!(e.line, 6, "{text}\n{e}");
    }
}

#[test]
fn the_ramp_kit_inventory_keeps_warm_containers() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ramp_kit/runners.toml");
    let inv = load(&path).unwrap();
    let warm = inv.runners[0]
        .warm
        .as_ref()
        .expect("the RAMP runner keeps warm containers");
    assert_eq!(warm.command, ["datarun-ramp-fold"]);
    assert!(inv.runners[0].images.contains(&warm.image));
}
