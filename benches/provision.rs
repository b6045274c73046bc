//! Provisioning time: `datarun provision` on 1, 3 and 6 fresh runner hosts (sshd containers
//! with the engine's socket, as in tests/provision.rs), then the unchanged re-run (median of 3).
//! With BENCH_ANSIBLE=path/to/ansible-playbook (scripts/bench-ansible.sh sets it) it also times
//! the equivalent ansible-core playbook (benches/ansible/provision.yml) on the same hosts and
//! prints the ratio. BENCH_HOSTS=1,3 changes the host counts.
//! Run with `cargo bench --bench provision`.

#[path = "../tests/common/hosts.rs"]
mod hosts;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hosts::Hosts;

const FOLD_IMAGE: &str = "datarun/busybox:test";
const RUNS: usize = 3;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    hosts::try_docker(&["image", "inspect", FOLD_IMAGE]).unwrap_or_else(|_| {
        panic!("{FOLD_IMAGE} is missing: build it with ./images/build-busybox.sh")
    });
    let counts: Vec<usize> = std::env::var("BENCH_HOSTS")
        .unwrap_or_else(|_| "1,3,6".into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_HOSTS: numbers"))
        .collect();
    let ansible = std::env::var("BENCH_ANSIBLE").ok();
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_datarun"))
        .unwrap()
        .len();
    println!(
        "provision: datarun binary {:.1} MB, {RUNS} unchanged runs per count (median)",
        size as f64 / 1e6
    );
    for n in counts {
        let h = Hosts::start_runners(n);
        let inv = h.dir.path().join("runners.toml");
        let entries = format!("executor = \"docker\"\nimages = [\"{FOLD_IMAGE}\"]");
        std::fs::write(&inv, h.inventory(&entries)).unwrap();
        let fresh = provision(&h, &inv, &["--accept-new"], "changed");
        let unchanged =
            median((0..RUNS).map(|_| provision(&h, &inv, &[], "all ok, nothing changed")));
        let check = median((0..RUNS).map(|_| provision(&h, &inv, &["--check"], "all ok")));
        let mut line = format!(
            "provision: {n} host{}: fresh {:.2} s, unchanged {:.2} s, --check {:.2} s",
            if n == 1 { "" } else { "s" },
            fresh.as_secs_f64(),
            unchanged.as_secs_f64(),
            check.as_secs_f64()
        );
        if let Some(playbook) = &ansible {
            let a = median((0..RUNS + 1).map(|_| run_ansible(&h, playbook)).skip(1));
            line += &format!(
                "; ansible-core unchanged {:.2} s => ansible / datarun = {:.1}x",
                a.as_secs_f64(),
                a.as_secs_f64() / unchanged.as_secs_f64()
            );
        }
        println!("{line}");
    }
}

fn median(times: impl Iterator<Item = Duration>) -> Duration {
    let mut v: Vec<Duration> = times.collect();
    v.sort();
    v[v.len() / 2]
}

/// Times one `datarun provision`; panics unless it succeeds and its summary says `expect`.
fn provision(h: &Hosts, inv: &Path, args: &[&str], expect: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_datarun"))
        .arg("provision")
        .arg(inv)
        .arg("--known-hosts")
        .arg(h.known_hosts())
        .args(args)
        .env("DATARUN_LOG", "warn")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(expect),
        "provision {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// Times one run of the equivalent ansible playbook; it must change nothing.
fn run_ansible(h: &Hosts, playbook: &str) -> Duration {
    let inv = h.dir.path().join("ansible.ini");
    let mut text = String::from("[runners]\n");
    for (i, host) in h.hosts.iter().enumerate() {
        text += &format!(
            "h{i} ansible_host={} ansible_user=root ansible_ssh_private_key_file={} \
             ansible_python_interpreter=/usr/bin/python3 state_dir={}\n",
            host.ip,
            h.ed25519.display(),
            h.state_dir(i).display()
        );
    }
    text += &format!(
        "[runners:vars]\ndatarun_bin={}\nimages=[\"{FOLD_IMAGE}\"]\n",
        env!("CARGO_BIN_EXE_datarun")
    );
    std::fs::write(&inv, text).unwrap();
    let yml = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/ansible/provision.yml");
    let started = Instant::now();
    let out = Command::new(playbook)
        .args(["-i", inv.to_str().unwrap(), "-f", "10", yml])
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_PIPELINING", "True")
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout
                .lines()
                .filter(|l| l.contains(" ok="))
                .all(|l| l.contains(" changed=0 ")),
        "ansible-playbook failed or changed something:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}
