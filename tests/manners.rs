//! The CLI's manners: exit codes that say what happened, logs without colour escapes when
//! stderr is not a terminal (and JSON lines on request), completions and a man page, and a
//! systemd unit whose command line `serve` accepts.

mod common;

use common::{Master, BIN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn exit_codes_say_what_happened() {
    let m = Master::start(None);
    // 0: done; 1: the fold failed.
    assert_eq!(code(&m.cli(&["submit", "--wait", "--", "true"])), Some(0));
    assert_eq!(
        code(&m.cli(&["submit", "--wait", "--", "sh", "-c", "exit 3"])),
        Some(1)
    );
    // 2: a usage error.
    assert_eq!(code(&m.cli(&["queue", "frobnicate"])), Some(2));
    // 3: not found.
    let out = m.cli(&["fold", "show", "999999"]);
    assert_eq!(
        code(&out),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 4: unauthorized.
    let out = Command::new(BIN)
        .args(["queue", "status", "--server", &m.url, "--token", "drt_nope"])
        .env_remove("DATARUN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 5: unreachable (a port nobody listens on).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = Command::new(BIN)
        .args(["queue", "status", "--server", &url, "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 6: a wait that runs out.
    assert_eq!(
        code(&m.cli(&["submit", "--wait", "--timeout", "300ms", "--", "sleep", "5"])),
        Some(6)
    );
}

/// Runs `serve` with stderr to a file for a moment; returns what it wrote.
fn serve_log(extra: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .env("DATARUN_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join("data/server").exists() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn logs_to_a_file_have_no_colour_and_json_on_request() {
    let text = serve_log(&[], &[]);
    assert!(text.contains("serving on"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file:\n{text}"
    );
    let json = serve_log(&["--log-format", "json"], &[]);
    let lines: Vec<&str> = json.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    let env = serve_log(&[], &[("DATARUN_LOG_FORMAT", "json")]);
    assert!(
        env.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('{')),
        "{env}"
    );
}

#[test]
fn completions_and_a_man_page() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef datarun"),
        ("fish", "complete -c datarun"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..200.min(text.len())]
        );
        assert!(
            text.contains("provision") && text.contains("queue"),
            "{shell}"
        );
    }
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(
        man.contains(".TH datarun") && man.contains("serve"),
        "{}",
        &man[..300.min(man.len())]
    );
    assert_eq!(
        code(
            &Command::new(BIN)
                .args(["completions", "tcsh"])
                .output()
                .unwrap()
        ),
        Some(2)
    );
}

#[test]
fn the_systemd_unit_starts_a_master() {
    let unit = std::fs::read_to_string("packaging/datarun.service").unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut args = shell_words::split(exec).unwrap();
    assert_eq!(args[0], "/usr/local/bin/datarun");
    // The unit's own flags, with its paths moved into a temp dir and no inventory file.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("master");
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--data-dir" => args[i + 1] = data.display().to_string(),
            "--listen" => args[i + 1] = "127.0.0.1:0".into(),
            "--inventory" => {
                let inv = dir.path().join("runners.toml");
                std::fs::write(
                    &inv,
                    "[[runner]]\nname = \"here\"\ntransport = \"local\"\nexecutor = \"process\"\n",
                )
                .unwrap();
                args[i + 1] = inv.display().to_string();
            }
            _ => {}
        }
        i += 1;
    }
    let mut child = Command::new(BIN)
        .args(&args[1..])
        .env("DATARUN_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("server").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve with the unit's flags exited: {status}");
        }
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM ends it cleanly: {status}");
    let _ = Master::start; // the harness module is shared
}
