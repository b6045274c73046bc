//! Unix runners: the master dials an agent daemon's socket on this machine (`transport =
//! "unix"`). The daemon owns its folds: a fold started by one master runs on while that master
//! is killed, and the next master to say hello records its result, once.

mod common;

use common::daemon::Daemon;
use common::{sh, Master, BIN};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_unix_runner_runs_folds_and_keeps_them_across_a_master_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, socket) = Daemon::start(dir.path(), "u1");
    let inventory = format!(
        "[[runner]]\nname = \"u1\"\ntransport = \"unix\"\nsocket = \"{}\"\nexecutor = \"process\"\nslots = 2\ncpus = 2\nmemory = \"1G\"\nqueues = [\"*\"]\n",
        socket.display()
    );
    let mut m = Master::start(Some(&inventory));
    let quick = m.submit(vec![sh("echo hello > $DATARUN_OUTPUT/out.txt")]);
    let done = m.wait_all(&quick, Duration::from_secs(30));
    assert_eq!(done[0]["state"], "done", "{}", done[0]);
    let out = m.cli_ok(&["fold", "output", &quick[0].to_string(), "out.txt"]);
    assert_eq!(out, "hello\n");

    // A fold that outlives its master.
    let marks = dir.path().join("runs");
    let slow = m.submit(vec![sh(&format!(
        "echo start >> {m}; sleep 2; echo end >> {m}",
        m = marks.display()
    ))]);
    m.wait_state(slow[0], "running", Duration::from_secs(20));
    m.kill9();
    m.spawn();
    let f = &m.wait_all(&slow, Duration::from_secs(30))[0];
    assert_eq!(f["state"], "done", "{f}");
    assert_eq!(f["attempts"], 1, "re-adopted, not rerun: {f}");
    let runs = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(runs, "start\nend\n", "the fold ran once");
}

#[test]
fn unix_runner_inventory_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("runners.toml");
    for (text, line, key) in [
        ("[[runner]]\nname = \"u\"\ntransport = \"unix\"\n", 1, "runner.socket"),
        ("[[runner]]\nname = \"u\"\ntransport = \"unix\"\nsocket = \"rel/a.sock\"\n", 4, "runner.socket"),
        ("[[runner]]\nname = \"u\"\ntransport = \"local\"\nsocket = \"/tmp/a.sock\"\n", 4, "runner.socket"),
        ("[[runner]]\nname = \"u\"\ntransport = \"unix\"\nsocket = \"/tmp/a.sock\"\naddress = \"h\"\n", 5, "runner.address"),
    ] {
        std::fs::write(&inv, text).unwrap();
        let out = Command::new(BIN)
            .args(["inventory", "check"])
            .arg(&inv)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("runners.toml:{line}: {key}")),
            "{text}\n{err}"
        );
    }
}

#[test]
fn an_unreachable_runner_is_reported_once_not_at_every_retry() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("runners.toml");
    let mut text = String::new();
    for i in 0..3 {
        text.push_str(&format!(
            "[[runner]]\nname = \"gone{i}\"\ntransport = \"unix\"\nsocket = \"{}/gone{i}.sock\"\nexecutor = \"process\"\n\n",
            dir.path().display()
        ));
    }
    std::fs::write(&inv, text).unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--inventory")
        .arg(&inv)
        .env("DATARUN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Connects at 0 s, then retries after 2 and 4 more seconds: three failures each.
    std::thread::sleep(Duration::from_secs(7));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    for i in 0..3 {
        let n = text
            .lines()
            .filter(|l| l.contains(&format!("runner gone{i}: cannot connect")))
            .count();
        assert_eq!(n, 1, "runner gone{i} warned {n} times:\n{text}");
    }
}
