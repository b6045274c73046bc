//! Rendering: quoting of hostile values, strict mode, scripts that parse.

use super::*;
use crate::inventory::parse;

const HOSTILE: &str = "/tmp/a'b; rm -rf / $(reboot) `id` \"x\" %n\nnext";

fn runner(extra: &str) -> crate::inventory::RunnerSpec {
    let text = format!("[[runner]]\nname = \"lab-1\"\naddress = \"10.0.0.1\"\n{extra}");
    parse(&text, "runners.toml").unwrap().runners.remove(0)
}

fn binary() -> AgentBinary {
    AgentBinary {
        path: "/usr/bin/datarun".into(),
        sha256: "ab".repeat(32),
        size: 1,
    }
}

/// Runs `script` with sh, returns stdout (panics on failure).
fn sh(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("test")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn hostile_values_reach_the_shell_as_one_word() {
    let mut vars = vars(&runner(""), &binary());
    vars["state_dir"] = HOSTILE.into();
    vars["host"] = "lab'1; echo pwned".into();
    let pb = Playbook::embedded().unwrap();
    let script = pb.script(Step::Facts, &vars).unwrap();
    // The prelude's assignments, then print the variables back.
    let prelude = script.split("fail()").next().unwrap();
    let printed = sh(
        &format!("{prelude}\nprintf '%s|%s' \"$state_dir\" \"$host\""),
        &["check"],
    );
    assert_eq!(printed, format!("{HOSTILE}|lab'1; echo pwned"));
}

#[test]
fn every_step_renders_to_a_script_sh_accepts() {
    let mut vars = vars(
        &runner("images = [\"datarun/fold:1\", \"*\"]\nexecutor = \"docker\"\n"),
        &binary(),
    );
    vars["state_dir"] = HOSTILE.into();
    let pb = Playbook::embedded().unwrap();
    for step in Step::ALL {
        let script = pb.script(step, &vars).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}\n{script}",
            step.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "*" is no image to load; the agent still gets it.
    assert_eq!(vars["images"], serde_json::json!(["datarun/fold:1"]));
    let command = vars["agent_command"].as_array().unwrap();
    assert!(command.contains(&"*".into()));
}

#[test]
fn unit_file_words_are_quoted_for_systemd() {
    let mut vars = vars(&runner(""), &binary());
    vars["agent_command"] = serde_json::json!(["/opt/dr bin/datarun", "100%", "$HOME", "a\"b"]);
    let unit = Playbook::embedded().unwrap().render("unit", &vars).unwrap();
    assert!(
        unit.contains(r#"ExecStart="/opt/dr bin/datarun" "100%%" "$$HOME" "a\"b""#),
        "{unit}"
    );
    vars["agent_command"] = serde_json::json!(["a\nb"]);
    let err = Playbook::embedded()
        .unwrap()
        .render("unit", &vars)
        .unwrap_err();
    assert!(err.contains("line break"), "{err}");
}

#[test]
fn strict_mode_names_a_missing_variable() {
    let mut vars = vars(&runner(""), &binary());
    vars.as_object_mut().unwrap().remove("socket");
    let err = Playbook::embedded()
        .unwrap()
        .script(Step::Health, &vars)
        .unwrap_err();
    assert!(err.contains("socket"), "{err}");

    let pb = Playbook::from_templates([("t", "x={{q nothere.deep}}".to_string())]).unwrap();
    let err = pb.render("t", &serde_json::json!({})).unwrap_err();
    assert!(err.contains("nothere"), "{err}");
    let pb = Playbook::from_templates([("t", "x={{plain}}".to_string())]).unwrap();
    assert!(pb.render("t", &serde_json::json!({})).is_err());
    // No HTML escaping.
    let pb = Playbook::from_templates([("t", "{{v}}".to_string())]).unwrap();
    assert_eq!(
        pb.render("t", &serde_json::json!({"v": "<a&b>"})).unwrap(),
        "<a&b>"
    );
    // A list is not one word.
    let pb = Playbook::from_templates([("t", "{{q v}}".to_string())]).unwrap();
    let err = pb.render("t", &serde_json::json!({"v": [1]})).unwrap_err();
    assert!(err.contains("#each"), "{err}");
}

#[test]
fn check_mode_changes_nothing_and_says_what_would() {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = vars(&runner(""), &binary());
    vars["state_dir"] = dir.path().join("s").to_str().unwrap().into();
    let pb = Playbook::embedded().unwrap();
    let out = parse_output(&sh(&pb.script(Step::User, &vars).unwrap(), &["check"]));
    assert!(
        out.changes.iter().any(|c| c.starts_with("create ")),
        "{out:?}"
    );
    assert!(!dir.path().join("s").exists());
}

#[test]
fn output_lines_are_parsed() {
    let out = parse_output(
        "noise\nfact: os=Linux\nfact: agent_facts={\"a\":1}\nchange: create /x\nnote: hi\nimage: busybox:1\n",
    );
    assert_eq!(out.facts["os"], "Linux");
    assert_eq!(out.facts["agent_facts"], "{\"a\":1}");
    assert_eq!(out.changes, ["create /x"]);
    assert_eq!(out.notes, ["hi"]);
    assert_eq!(out.images, ["busybox:1"]);
    assert_eq!(
        failure_reason("junk\nerror: Docker is not installed\n", Some(1), None),
        "Docker is not installed"
    );
    assert_eq!(failure_reason("", Some(2), None), "exited with status 2");
}
