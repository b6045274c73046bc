//! Folds over ssh on real sshd runner hosts (containers with the engine's socket, so each
//! host's agent daemon starts its folds as sibling containers), bootstrapped by
//! `datarun provision`, through the real master.
//! Runner loss: a stopped host's folds finish elsewhere, each exactly once; a short partition
//! reruns nothing; a master restart re-adopts what runs. Needs Docker and the sshd image; fails
//! (never skips) without them.

mod common;
#[path = "common/hosts.rs"]
mod hosts;

use common::procs::copies;
use common::Master;
use datarun::provision::{Session, SshOptions};
use hosts::{Hosts, Leftovers};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_datarun");
use common::BUSYBOX;

fn ensure_busybox() {
    common::ensure_image("build-busybox.sh", BUSYBOX);
}

/// Records each host's key in the hosts' known_hosts file (what `provision --accept-new` does).
fn record_host_keys(hosts: &Hosts) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..hosts.hosts.len() {
        let opts: SshOptions = hosts.options();
        let session = rt
            .block_on(Session::connect(&hosts.target(i), &opts))
            .unwrap_or_else(|e| panic!("ssh to host {i}: {e}"));
        rt.block_on(session.close());
    }
}

/// Bootstraps the hosts with `datarun provision` (recording their keys), as an operator would.
fn provision(hosts: &Hosts, inventory: &str) {
    let file = hosts.dir.path().join("runners.toml");
    std::fs::write(&file, inventory).unwrap();
    let out = Command::new(EXE)
        .arg("provision")
        .arg(&file)
        .arg("--known-hosts")
        .arg(hosts.known_hosts())
        .arg("--accept-new")
        // Not the real ~/.ssh/config nor the caller's ssh-agent.
        .env("DATARUN_SSH_CONFIG", "none")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run datarun provision");
    assert!(
        out.status.success(),
        "provision failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Cluster {
    hosts: Hosts,
    master: Master,
    _leftovers: Leftovers,
}

/// `n` runner hosts with running agents and a master reaching them over ssh as root.
fn cluster(n: usize, slots: u32, lease: &str) -> Cluster {
    cluster_as(n, slots, lease, "root")
}

/// The same, logging in as `user` (root, or the hosts' sudoer [`hosts::LOGIN_USER`]).
fn cluster_as(n: usize, slots: u32, lease: &str, user: &str) -> Cluster {
    let runner = format!(
        "slots = {slots}\ncpus = 4\nmemory = \"4G\"\nexecutor = \"docker\"\n\
         images = [\"{BUSYBOX}\"]\nqueues = [\"*\"]"
    );
    cluster_of(n, &runner, lease, user)
}

/// `n` runner hosts whose inventory entries end with `runner` (slots, executor, ...).
fn cluster_of(n: usize, runner: &str, lease: &str, user: &str) -> Cluster {
    ensure_busybox();
    let hosts = Hosts::start_runners(n);
    let leftovers = Leftovers((0..n).map(|i| hosts.state_dir(i).to_path_buf()).collect());
    let inventory = hosts
        .inventory(runner)
        .replace("user = \"root\"", &format!("user = \"{user}\""));
    provision(&hosts, &inventory);
    let known = hosts.known_hosts();
    let master = Master::start_with(
        Some(&inventory),
        &["--known-hosts", known.to_str().unwrap(), "--lease", lease],
    );
    wait_runners_ready(&master, n);
    Cluster {
        hosts,
        master,
        _leftovers: leftovers,
    }
}

fn wait_runners_ready(m: &Master, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = m.get("/runners");
        let runners = v["runners"].as_array().cloned().unwrap_or_default();
        let ready = runners.iter().filter(|r| r["state"] == "ready").count();
        if ready == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "runners never all ready: {}",
            serde_json::to_string_pretty(&v).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fold(script: &str) -> Value {
    json!({
        "command": ["sh", "-c", script],
        "image": BUSYBOX,
        "resources": { "cpus": 0.1, "memory": "64M" },
        "max_retries": 3,
    })
}

/// Each fold done with exactly one successful attempt; returns (runner, attempts) per fold.
fn assert_each_done_once(m: &Master, ids: &[i64]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for id in ids {
        let shown = m.fold(*id);
        assert_eq!(shown["fold"]["state"], "done", "fold {id}: {shown}");
        let attempts = shown["attempts"].as_array().unwrap();
        let successes: Vec<&Value> = attempts
            .iter()
            .filter(|a| a["outcome"]["kind"] == "success")
            .collect();
        assert_eq!(successes.len(), 1, "fold {id}: {attempts:?}");
        let ended = shown["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "attempt_ended")
            .count();
        assert_eq!(ended, attempts.len(), "one end per attempt for fold {id}");
        let runner = successes[0]["runner"].as_str().unwrap().to_string();
        out.push((runner, attempts.len()));
    }
    out
}

#[test]
fn sixty_folds_spread_over_three_ssh_runners_without_oversubscribing() {
    let c = cluster(3, 2, "60s");
    let m = &c.master;
    // Each agent reported its machine's facts at hello.
    for r in m.get("/runners")["runners"].as_array().unwrap() {
        let facts = &r["facts"];
        assert_eq!(facts["arch"], std::env::consts::ARCH, "{r}");
        assert!(
            facts["docker_version"].as_str().unwrap().contains("API"),
            "{r}"
        );
        assert!(facts["disk_free"].as_u64().unwrap() > 0, "{r}");
        assert!(facts["hostname"].as_str().unwrap().contains("-h"), "{r}");
    }
    let folds = (0..60)
        .map(|i| {
            fold(&format!(
                "sleep 0.3; echo fold-{i} > \"$DATARUN_OUTPUT/out.txt\""
            ))
        })
        .collect();
    let ids = m.submit(folds);
    m.wait_all(&ids, Duration::from_secs(300));
    let ran = assert_each_done_once(m, &ids);
    let mut per_runner: BTreeMap<String, usize> = BTreeMap::new();
    for (runner, attempts) in &ran {
        assert_eq!(*attempts, 1);
        *per_runner.entry(runner.clone()).or_default() += 1;
    }
    assert_eq!(
        per_runner.len(),
        3,
        "every runner took folds: {per_runner:?}"
    );
    // The terminal table shows how each runner is reached and what it is.
    let table = m.cli_ok(&["runners", "status"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("VIA") && header.contains("MACHINE"),
        "{table}"
    );
    for line in table.lines().skip(1) {
        assert!(line.contains("ssh") && line.contains("Docker "), "{table}");
    }
    // Outputs come back over ssh.
    for (i, id) in ids.iter().enumerate().step_by(17) {
        let out = m.cli_ok(&["fold", "output", &id.to_string(), "out.txt"]);
        assert_eq!(out.trim(), format!("fold-{i}"));
    }
    // Never more than 2 at once per runner, from the attempts' start and end times.
    let mut edges: BTreeMap<String, Vec<(i64, i32)>> = BTreeMap::new();
    for id in &ids {
        let a = &m.fold(*id)["attempts"][0];
        let runner = a["runner"].as_str().unwrap().to_string();
        let e = edges.entry(runner).or_default();
        e.push((a["started_at"].as_i64().unwrap(), 1));
        e.push((a["ended_at"].as_i64().unwrap(), -1));
    }
    for (runner, mut e) in edges {
        e.sort();
        let (mut now, mut peak) = (0, 0);
        for (_, d) in e {
            now += d;
            peak = peak.max(now);
        }
        assert!(peak <= 2, "{peak} folds at once on {runner} (2 slots)");
    }
}

#[test]
fn a_stopped_runner_loses_its_folds_to_the_others_each_ending_once() {
    let c = cluster(2, 2, "8s");
    let m = &c.master;
    let ids = m.submit((0..4).map(|_| fold("sleep 4")).collect());
    // Wait until h0 runs something, then stop it: sshd, agent and all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let on_h0 = ids.iter().any(|id| {
            let f = m.fold(*id);
            f["fold"]["state"] == "running" && f["attempts"][0]["runner"] == "h0"
        });
        if on_h0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing ever ran on h0");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.hosts.stop(0);
    m.wait_all(&ids, Duration::from_secs(120));
    let ran = assert_each_done_once(m, &ids);
    let moved = ran.iter().filter(|(_, n)| *n == 2).count();
    assert!(moved >= 1, "h0's folds were requeued: {ran:?}");
    assert!(
        ran.iter().all(|(r, _)| r == "h1"),
        "all finished on h1: {ran:?}"
    );
    let lost: Vec<Value> = ids
        .iter()
        .flat_map(|id| m.fold(*id)["attempts"].as_array().unwrap().clone())
        .filter(|a| a["outcome"]["kind"] == "lost")
        .collect();
    assert_eq!(lost.len(), moved, "{lost:?}");
    assert!(
        lost[0]["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("lease"),
        "{lost:?}"
    );
}

#[test]
fn a_partition_shorter_than_the_lease_reruns_nothing() {
    // Lease 90 s: heartbeat 10 s, so the link drops after 30 s of silence and the reconnect
    // (backoff at most 10 s) comes well inside the lease even on a loaded machine.
    let c = cluster(1, 4, "90s");
    let m = &c.master;
    let ids = m.submit((0..3).map(|_| fold("sleep 10; echo ok")).collect());
    for id in &ids {
        m.wait_state(*id, "running", Duration::from_secs(60));
    }
    // Long enough for the master to notice (three missed heartbeats), short of the lease.
    c.hosts.disconnect(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = m.get("/runners");
        if v["runners"][0]["state"] != "ready" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the master never noticed the partition"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.hosts.reconnect(0);
    m.wait_all(&ids, Duration::from_secs(120));
    let ran = assert_each_done_once(m, &ids);
    assert!(ran.iter().all(|(_, n)| *n == 1), "nothing reran: {ran:?}");
}

#[test]
fn a_master_restart_readopts_running_folds_over_ssh() {
    let mut c = cluster(2, 2, "60s");
    let ids = c
        .master
        .submit((0..4).map(|_| fold("sleep 3; echo ok")).collect());
    for id in &ids {
        c.master.wait_state(*id, "running", Duration::from_secs(60));
    }
    c.master.kill9();
    std::thread::sleep(Duration::from_millis(500));
    c.master.spawn();
    c.master.wait_all(&ids, Duration::from_secs(120));
    let ran = assert_each_done_once(&c.master, &ids);
    assert!(ran.iter().all(|(_, n)| *n == 1), "nothing reran: {ran:?}");
}

#[test]
fn a_runner_without_an_agent_says_why_it_is_not_connected() {
    ensure_busybox();
    let hosts = Hosts::start_runners(1);
    record_host_keys(&hosts);
    let known = hosts.known_hosts();
    let inventory = hosts.inventory("executor = \"docker\"");
    let m = Master::start_with(
        Some(&inventory),
        &["--known-hosts", known.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = m.cli_ok(&["runners", "status"]);
        if out.contains("datarun is not installed at") && out.contains("run `datarun provision`") {
            break;
        }
        assert!(Instant::now() < deadline, "no reason shown: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // An unknown host key is refused by the master (it never accepts new keys itself).
    let other = tempfile::tempdir().unwrap();
    let empty = other.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let m2 = Master::start_with(
        Some(&inventory),
        &["--known-hosts", empty.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = m2.cli_ok(&["runners", "status", "--json"]);
        if out.contains("not in") || out.contains("unknown") {
            assert!(out.contains(&*empty.to_string_lossy()), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no host key refusal shown: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_runner_back_after_its_lease_has_its_late_results_discarded() {
    let c = cluster(2, 2, "6s");
    let m = &c.master;
    let ids = m.submit((0..4).map(|_| fold("sleep 6; echo ok")).collect());
    for id in &ids {
        m.wait_state(*id, "running", Duration::from_secs(60));
    }
    let on_h0: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| m.fold(*id)["attempts"][0]["runner"] == "h0")
        .collect();
    assert!(!on_h0.is_empty(), "2 slots per runner: h0 took some");
    // Cut h0 off past its lease; its folds go back in line and run on h1 (or h0 once back);
    // meanwhile h0's own attempts finish in the dark.
    c.hosts.disconnect(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !on_h0
        .iter()
        .all(|id| m.fold(*id)["fold"]["attempts"].as_i64() == Some(2))
    {
        assert!(Instant::now() < deadline, "h0's folds were never requeued");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    c.hosts.reconnect(0);
    m.wait_all(&ids, Duration::from_secs(120));
    let ran = assert_each_done_once(m, &ids);
    assert!(ran.iter().all(|(_, n)| *n <= 2), "{ran:?}");
    // h0 came back with results for attempts already given up: each discarded and logged.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rejected: usize = on_h0
            .iter()
            .map(|id| {
                m.fold(*id)["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["kind"] == "late_result_rejected")
                    .count()
            })
            .sum();
        if rejected == on_h0.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rejected} of {} late results logged",
            on_h0.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // And the results that count are the requeued attempts'.
    let ran = assert_each_done_once(m, &on_h0);
    assert!(ran.iter().all(|(_, n)| *n == 2), "{ran:?}");
}

#[test]
fn a_non_root_login_provisions_through_sudo_and_runs_folds() {
    let c = cluster_as(1, 2, "60s", hosts::LOGIN_USER);
    let m = &c.master;
    // The agent runs as its own user; the login user reaches its socket through the group.
    let ps = c.hosts.sh(0, "ps -o user=,args= -C datarun").unwrap();
    let daemon: Vec<&str> = ps.lines().filter(|l| l.contains("--listen")).collect();
    assert!(
        daemon.len() == 1 && daemon[0].trim_start().starts_with("datarun "),
        "{ps}"
    );
    assert!(
        ps.lines()
            .filter(|l| l.contains("--connect"))
            .all(|l| l.trim_start().starts_with(hosts::LOGIN_USER)),
        "the master's bridge runs as the login user: {ps}"
    );
    let groups = c
        .hosts
        .sh(0, &format!("id -nG {}", hosts::LOGIN_USER))
        .unwrap();
    assert!(
        groups.split_whitespace().any(|g| g == "datarun"),
        "{groups}"
    );
    let ids = m.submit((0..4).map(|i| fold(&format!("echo {i}"))).collect());
    m.wait_all(&ids, Duration::from_secs(120));
    let ran = assert_each_done_once(m, &ids);
    assert!(ran.iter().all(|(r, n)| r == "h0" && *n == 1), "{ran:?}");
}

#[test]
fn a_runner_back_after_its_lease_never_runs_a_lost_attempt_beside_its_retry() {
    // One 2-slot runner running folds as processes, so that they leave witness lines in its
    // state dir (a directory of this machine) and show in this machine's /proc.
    let runner = "slots = 2\ncpus = 4\nmemory = \"4G\"\nexecutor = \"process\"\nqueues = [\"*\"]";
    let c = cluster_of(1, runner, "5s", "root");
    let m = &c.master;
    let state = c.hosts.state_dir(0).to_path_buf();
    let marker = |i: usize| format!("partition-witness-{}-{i}", std::process::id());
    // Two folds whose first run takes 20 s (its rerun 2 s); each run writes a start line
    // and, unless it is killed, an end line.
    let folds: Vec<Value> = (0..2)
        .map(|i| {
            let w = state.join(format!("witness-{i}"));
            json!({
                "command": ["sh", "-c", format!(
                    ": {}; if [ -e {w} ]; then t=2; else t=20; fi; \
                     echo \"start $DATARUN_ATTEMPT $(date +%s%N)\" >> {w}; sleep $t; \
                     echo \"end $DATARUN_ATTEMPT $(date +%s%N)\" >> {w}",
                    marker(i), w = w.display()
                )],
                "resources": { "cpus": 0.1, "memory": "64M" },
                // Fold 0 has no retries, fold 1 one: a loss must use neither.
                "max_retries": i,
            })
        })
        .collect();
    let ids = m.submit(folds);
    for id in &ids {
        m.wait_state(*id, "running", Duration::from_secs(60));
    }
    // Partition 2 s in, for 8 s: past the lease, the master gives both attempts up and
    // requeues the folds, while the runner keeps running them in the dark.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (most, most_at_once) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            // The most copies of one fold, and of both, seen running at once.
            let (mut most, mut total) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now: Vec<usize> = (0..2).map(|i| copies(&marker(i))).collect();
                most = most.max(*now.iter().max().unwrap());
                total = total.max(now.iter().sum());
                let runners = m.get("/runners");
                let r = &runners["runners"][0];
                assert!(r["slots_used"].as_u64() <= r["slots_total"].as_u64(), "{r}");
                std::thread::sleep(Duration::from_millis(100));
            }
            (most, total)
        });
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::sleep(Duration::from_secs(2));
            c.hosts.disconnect(0);
            std::thread::sleep(Duration::from_secs(8));
            c.hosts.reconnect(0);
            m.wait_all(&ids, Duration::from_secs(120));
        }));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        if let Err(panic) = ran {
            std::panic::resume_unwind(panic);
        }
        seen
    });
    assert_eq!(most, 1, "two runs of one fold overlapped on the runner");
    assert!(
        most_at_once <= 2,
        "the 2-slot runner ran {most_at_once} folds at once"
    );
    for (i, id) in ids.iter().enumerate() {
        let shown = m.fold(*id);
        let f = &shown["fold"];
        // Lost once to the partition, then done: the loss used no retry (max_retries = 0).
        assert_eq!(f["state"], "done", "fold {id}: {f}");
        assert_eq!(
            (f["losses"].as_u64(), f["retries_used"].as_u64()),
            (Some(1), Some(0)),
            "{f}"
        );
        let kinds: Vec<&str> = shown["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"]["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["lost", "success"], "fold {id}");
        // The lost run was cancelled when the runner came back: it never reached its end.
        let witness = std::fs::read_to_string(state.join(format!("witness-{i}"))).unwrap();
        let starts = witness.lines().filter(|l| l.starts_with("start")).count();
        let ends = witness.lines().filter(|l| l.starts_with("end")).count();
        assert_eq!((starts, ends), (2, 1), "fold {id}: {witness}");
    }
}

#[test]
fn a_runner_rebooted_without_systemd_gets_its_agent_back_and_its_log_is_rotated() {
    let c = cluster(1, 1, "8s");
    let m = &c.master;
    let dir = c.hosts.state_dir(0).display().to_string();
    // The supervisor rotates the agent's log past 10 MiB: a copy in .1, the log emptied.
    c.hosts
        .sh(0, &format!("head -c 11000000 /dev/zero >> {dir}/agent.log"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sizes = c
            .hosts
            .sh(
                0,
                &format!("wc -c < {dir}/agent.log; wc -c < {dir}/agent.log.1 || true"),
            )
            .unwrap();
        let sizes: Vec<u64> = sizes
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if sizes.len() == 2 && sizes[0] < 1_000_000 && sizes[1] >= 11_000_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log was never rotated: {sizes:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A reboot: every process of the host goes; sshd comes back, nothing else starts.
    c.hosts.stop(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.get("/runners")["runners"][0]["state"] == "ready" {
        assert!(
            Instant::now() < deadline,
            "the master never noticed the reboot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.hosts.start_again(0);
    // The master's link finds no agent, starts its supervisor, and the runner is back.
    wait_runners_ready(m, 1);
    let ids = m.submit(vec![fold("echo back")]);
    m.wait_all(&ids, Duration::from_secs(60));
    assert_each_done_once(m, &ids);
    let supervisor = c.hosts.sh(0, "pgrep -f datarun-supervise").unwrap();
    assert!(!supervisor.trim().is_empty());
}
