//! `datarun provision` against real sshd containers acting as runners (engine socket and state
//! dir mounted; `./images/build-sshd.sh` and `./images/build-busybox.sh` build the images).

#[path = "common/hosts.rs"]
mod hosts;

use std::process::Command;

use hosts::{docker, try_docker, Hosts, Kind};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_datarun");
const FOLD_IMAGE: &str = "datarun/busybox:test";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Vec<Value> {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `datarun provision INVENTORY --known-hosts ... ARGS`.
fn provision(h: &Hosts, inventory: &str, args: &[&str]) -> Run {
    let file = h.dir.path().join("runners.toml");
    // Unchanged, it is not rewritten (runs at once would read it half-written).
    if std::fs::read_to_string(&file).ok().as_deref() != Some(inventory) {
        std::fs::write(&file, inventory).unwrap();
    }
    let out = Command::new(BIN)
        .arg("provision")
        .arg(&file)
        .arg("--known-hosts")
        .arg(h.known_hosts())
        .args(["--connect-timeout", "4s"])
        .args(args)
        .env("DATARUN_LOG", "warn")
        // Not the real ~/.ssh/config nor the caller's ssh-agent.
        .env("DATARUN_SSH_CONFIG", "none")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run datarun provision");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "--- provision {args:?}: exit {}\n{}{}",
        run.code, run.stderr, run.stdout
    );
    run
}

fn fold_image() {
    try_docker(&["image", "inspect", "--format", "{{.Id}}", FOLD_IMAGE]).unwrap_or_else(|_| {
        panic!("{FOLD_IMAGE} is missing: build it with ./images/build-busybox.sh")
    });
}

fn statuses(reports: &[Value]) -> Vec<(String, String)> {
    reports
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// What the host's agent daemon says to `datarun agent --ping`.
fn ping(h: &Hosts, i: usize) -> Result<String, String> {
    let dir = h.state_dir(i).display().to_string();
    h.sh(
        i,
        &format!("{dir}/bin/datarun agent --ping {dir}/agent.sock"),
    )
}

#[test]
fn three_hosts_in_parallel_then_nothing_changes() {
    fold_image();
    let h = Hosts::start_runners(3);
    let inv = h.inventory(&format!(
        "executor = \"docker\"\nimages = [\"{FOLD_IMAGE}\"]"
    ));

    let started = std::time::Instant::now();
    let run = provision(&h, &inv, &["--accept-new", "--json"]);
    let wall = started.elapsed().as_millis() as u64;
    assert_eq!(run.code, 0);
    let reports = run.json();
    // In parallel: the whole run took less than the hosts' times added up.
    let sum: u64 = reports
        .iter()
        .map(|r| r["elapsed_ms"].as_u64().unwrap())
        .sum();
    assert!(wall < sum, "{wall} ms for hosts taking {sum} ms in all");
    assert_eq!(
        statuses(&reports),
        pairs(&[("h0", "changed"), ("h1", "changed"), ("h2", "changed")])
    );
    for (i, r) in reports.iter().enumerate() {
        let changes = r["changes"].to_string();
        for what in [
            "agent: install datarun",
            "user: create user datarun",
            "service: ",
        ] {
            assert!(changes.contains(what), "{what} not in {changes}");
        }
        let facts: Value = serde_json::from_str(&ping(&h, i).expect("agent answers")).unwrap();
        assert_eq!(facts["agent_version"], env!("CARGO_PKG_VERSION"));
        // The agent runs as datarun, which may use the engine's socket.
        let user = h.sh(i, "ps -o user= -C datarun").unwrap();
        assert!(user.lines().all(|u| u.trim() == "datarun"), "{user}");
    }
    assert!(run.stderr.contains("provisioning 3 runners"));

    // Again: every host unchanged, and the summary says so.
    let run = provision(&h, &inv, &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("3 hosts: all ok, nothing changed"),
        "{}",
        run.stdout
    );
    let run = provision(&h, &inv, &["--json"]);
    assert_eq!(
        statuses(&run.json()),
        pairs(&[("h0", "ok"), ("h1", "ok"), ("h2", "ok")])
    );
    // And --check agrees.
    let run = provision(&h, &inv, &["--check"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("all ok, nothing changed"),
        "{}",
        run.stdout
    );

    // A changed binary is uploaded again and the agent restarted; the rest stays.
    let bin = h.state_dir(1).join("bin/datarun");
    let b = bin.display();
    h.sh(
        1,
        &format!("cp {b} {b}.x && printf x >> {b}.x && mv {b}.x {b}"),
    )
    .unwrap();
    let changes_of = |reports: &[Value]| -> Vec<String> {
        reports[0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    // --check predicts exactly what the run then does, the agent's restart included.
    let run = provision(&h, &inv, &["--json", "--check", "--limit", "h1"]);
    let predicted = changes_of(&run.json());
    let run = provision(&h, &inv, &["--json", "--limit", "h1"]);
    let reports = run.json();
    assert_eq!(statuses(&reports), pairs(&[("h1", "changed")]));
    let changes = changes_of(&reports);
    assert_eq!(predicted, changes);
    assert_eq!(
        changes,
        [
            format!(
                "agent: update {} to datarun {}",
                bin.display(),
                env!("CARGO_PKG_VERSION")
            ),
            "service: restart the agent".to_string()
        ]
    );
    ping(&h, 1).expect("agent answers after the restart");
}

#[test]
fn check_on_a_fresh_host_says_what_would_change_and_changes_nothing() {
    let h = Hosts::start_runners(1);
    let inv = h.inventory("");
    let run = provision(&h, &inv, &["--check", "--accept-new", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reports = run.json();
    assert_eq!(statuses(&reports), pairs(&[("h0", "changed")]));
    let changes = reports[0]["changes"].to_string();
    for what in [
        "agent: install datarun",
        "user: create user datarun",
        "service: write",
        "service: start the agent",
    ] {
        assert!(changes.contains(what), "{what} not in {changes}");
    }
    assert!(
        run.stderr
            .contains("[h0] agent ... would change: install datarun"),
        "{}",
        run.stderr
    );

    // Nothing on the host changed: no user or group, an empty state dir, no agent running.
    assert!(h.sh(0, "id datarun").is_err());
    assert!(h.sh(0, "getent group datarun-docker").is_err());
    assert_eq!(std::fs::read_dir(h.state_dir(0)).unwrap().count(), 0);
    assert!(h.sh(0, "ps -C datarun,datarun-superv").is_err());

    let run = provision(&h, &inv, &[]);
    assert!(
        run.stdout.contains("1 host: 0 ok, 1 changed, 0 failed"),
        "{}",
        run.stdout
    );
}

#[test]
fn limit_selects_by_name_label_and_cidr() {
    let h = Hosts::start_runners(3);
    let inv = h
        .inventory("")
        .replacen("name = \"h2\"\n", "name = \"h2\"\nlabels = [\"gpu\"]\n", 1);
    let names = |run: &Run| -> Vec<String> {
        run.json()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let run = provision(
        &h,
        &inv,
        &[
            "--check",
            "--accept-new",
            "--json",
            "--limit",
            "h0",
            "--limit",
            "gpu",
        ],
    );
    assert_eq!(names(&run), ["h0", "h2"]);
    let cidr = format!("{}/32", h.ip(1));
    let run = provision(&h, &inv, &["--check", "--json", "--limit", &cidr]);
    assert_eq!(names(&run), ["h1"]);
    let run = provision(&h, &inv, &["--check", "--json", "--limit", "h*"]);
    assert_eq!(names(&run), ["h0", "h1", "h2"]);
    let run = provision(&h, &inv, &["--check", "--limit", "nope"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("--limit nope matches no ssh runner"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_failing_host_does_not_stop_the_others() {
    let h = Hosts::start_runners(3);
    let garbage = h.dir.path().join("not-a-key");
    std::fs::write(&garbage, "hello\n").unwrap();
    let inv = format!(
        "{}[[runner]]\nname = \"badkey\"\naddress = \"{}\"\nuser = \"root\"\nidentity_file = \"{}\"\n",
        h.inventory(""),
        h.ip(0),
        garbage.display()
    );
    // Record h2's key, then give h2 a new one (a reinstalled host, or an attacker).
    let run = provision(&h, &inv, &["--accept-new", "--limit", "h2", "--check"]);
    assert_eq!(run.code, 0);
    h.recreate(2);
    h.disconnect(1);

    let run = provision(&h, &inv, &["--accept-new"]);
    assert_eq!(
        run.code, 2,
        "a failed host makes the exit code 2, as Ansible's"
    );
    let summary = &run.stdout;
    assert!(summary.contains("2 failed, 1 unreachable"), "{summary}");
    let line = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {summary}"))
            .to_string()
    };
    assert!(line("h0").contains("changed"), "{summary}");
    assert!(line("h1").contains("unreachable"), "{summary}");
    // Unreachable: named, at connect, told apart from failed hosts.
    assert!(
        summary.contains(&format!("h1 unreachable at connect: ssh {}:22", h.ip(1))),
        "{summary}"
    );
    // Changed host key: refused, naming the host, the file and the line.
    let kh = h.known_hosts().display().to_string();
    assert!(
        summary.contains(&format!(
            "h2 failed at connect: ssh {}:22: HOST KEY CHANGED",
            h.ip(2)
        )),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{kh}:1 records a different")),
        "{summary}"
    );
    // Bad identity file: says which file and why.
    assert!(
        summary.contains(&format!(
            "badkey failed at connect: ssh {}:22: bad identity file {}: not a private key",
            h.ip(0),
            garbage.display()
        )),
        "{summary}"
    );
    ping(&h, 0).expect("h0 was provisioned all the same");
}

#[test]
fn a_runner_without_docker_fails_with_what_to_do() {
    let h = Hosts::start_kind(1, Kind::Runner { docker: false });
    let run = provision(&h, &h.inventory("executor = \"docker\""), &["--accept-new"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stdout.contains(
            "h0 failed at docker: Docker is not installed on h0; install it or set \
             install_docker = true in runners.toml"
        ),
        "{}",
        run.stdout
    );
    assert!(run
        .stderr
        .contains("[h0] docker ... failed: Docker is not installed"));

    // A runner running folds as processes does not need Docker: provisioned, and says so.
    let run = provision(&h, &h.inventory("executor = \"process\""), &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reports = run.json();
    assert_eq!(statuses(&reports), pairs(&[("h0", "changed")]));
    let docker_step = reports[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "docker")
        .expect("a docker step");
    assert_eq!(docker_step["status"], "ok");
    assert!(
        docker_step["notes"]
            .to_string()
            .contains("Docker is not needed"),
        "{docker_step}"
    );
    ping(&h, 0).expect("the agent answers");
    // Only the hosts that could not be reached: exit 4.
    h.disconnect(0);
    let run = provision(&h, &h.inventory("executor = \"process\""), &["--json"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(statuses(&run.json()), pairs(&[("h0", "unreachable")]));
    assert!(
        run.stderr.contains("[h0] connect ... unreachable: ssh "),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_runner_lacks_is_streamed_over_ssh_or_clearly_missing() {
    fold_image();
    let h = Hosts::start_runners(1);
    let tag = format!("datarun/provision-test:{}", std::process::id());
    docker(&["tag", FOLD_IMAGE, &tag]);
    // Exported from this machine's engine as provision does, then gone from it.
    let engine = datarun::agent::docker::engine::connect().await.unwrap();
    let mut tarball = Vec::new();
    let mut export = datarun::agent::docker::engine::export(&engine, &tag)
        .await
        .unwrap();
    tokio::io::AsyncReadExt::read_to_end(&mut export, &mut tarball)
        .await
        .unwrap();
    docker(&["rmi", &tag]);

    // Neither the runner nor this machine has it: a clear failure.
    let inv = h.inventory(&format!("executor = \"docker\"\nimages = [\"{tag}\"]"));
    let run = tokio::task::block_in_place(|| provision(&h, &inv, &["--accept-new"]));
    assert_eq!(run.code, 2);
    let want = format!(
        "[h0] images ... failed: image {tag} is not on this machine's Docker engine either"
    );
    assert!(run.stderr.contains(&want), "{}", run.stderr);

    // The tarball streamed over SSH into the runner's `datarun image load -`.
    let session = datarun::provision::Session::connect(&h.target(0), &h.options())
        .await
        .unwrap();
    let bin = h.state_dir(0).join("bin/datarun");
    let command = format!("{} image load -", bin.display());
    let out = session
        .exec_with_input(&command, &tarball[..], |_| {})
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr_lossy());
    assert!(
        out.stdout_lossy().contains(&format!("loaded {tag}")),
        "{}",
        out.stdout_lossy()
    );
    session.close().await;

    // Now the runner has it: the images step is ok.
    let run = tokio::task::block_in_place(|| provision(&h, &inv, &["--json"]));
    let reports = run.json();
    let images = reports[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "images")
        .expect("an images step");
    assert_eq!(images["status"], "ok");
    let _ = try_docker(&["rmi", &tag]);
}

#[test]
fn two_runs_on_one_host_at_once_take_turns() {
    let h = Hosts::start_runners(1);
    let inv = h.inventory("executor = \"process\"");
    std::fs::write(h.dir.path().join("runners.toml"), &inv).unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| provision(&h, &inv, &["--accept-new", "--json"]));
        let b = s.spawn(|| provision(&h, &inv, &["--accept-new", "--json"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    // One run made the changes; the other, waiting on the host's lock, found them made.
    let mut seen = [statuses(&a.json()), statuses(&b.json())].concat();
    seen.sort();
    assert_eq!(seen, pairs(&[("h0", "changed"), ("h0", "ok")]));
    ping(&h, 0).expect("the agent answers");
}
