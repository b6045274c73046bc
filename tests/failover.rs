//! Two masters on one PostgreSQL database, one active: the standby takes over within the
//! leadership lease when the active master is killed, re-adopts the folds running on the
//! runners (agent daemons both masters reach over Unix sockets), and every fold ends once.

mod common;

use common::daemon::Daemon;
use common::Master;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(2);
const FOLDS: usize = 500;
const KILLS: usize = 5;
const RUNNERS: usize = 3;
const SLOTS: usize = 4;

/// `GET /api/v1/health` (no token): the master's role, or None when it does not answer.
fn role(http: &reqwest::blocking::Client, m: &Master) -> Option<Value> {
    let r = http.get(format!("{}/api/v1/health", m.url)).send().ok()?;
    r.json::<Value>().ok()
}

fn wait_role(
    http: &reqwest::blocking::Client,
    m: &Master,
    want: &str,
    within: Duration,
) -> Duration {
    let t = Instant::now();
    loop {
        if role(http, m).is_some_and(|h| h["role"] == want) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "master {} did not become {want} within {within:?}: {:?}",
            m.url,
            role(http, m)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A small seeded generator (xorshift), so the kill instants are the same on every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Folds assigned or running now, by the active master's queue counts.
fn running(m: &Master) -> u64 {
    m.get("/queue")["counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "running" || c["state"] == "assigned")
        .map(|c| c["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn killing_the_active_master_five_times_under_load_loses_and_repeats_nothing() {
    let url = common::pg::database();
    let dir = tempfile::tempdir().unwrap();
    let mut daemons = Vec::new();
    let mut inventory = String::new();
    for i in 0..RUNNERS {
        let (d, socket) = Daemon::start(dir.path(), &format!("u{i}"));
        daemons.push(d);
        inventory.push_str(&format!(
            "[[runner]]\nname = \"u{i}\"\ntransport = \"unix\"\nsocket = \"{}\"\nexecutor = \"process\"\nslots = {SLOTS}\ncpus = 4\nmemory = \"4G\"\nqueues = [\"*\"]\n\n",
            socket.display()
        ));
    }
    let lease = format!("{}s", LEASE.as_secs());
    let extra = ["--store", url.as_str(), "--leader-lease", lease.as_str()];
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut masters = vec![Master::start_with(Some(&inventory), &extra)];
    wait_role(&http, &masters[0], "active", Duration::from_secs(10));
    masters.push(Master::start_with(Some(&inventory), &extra));
    let standby = role(&http, &masters[1]).unwrap();
    assert_eq!(standby["role"], "standby", "{standby}");
    assert_eq!(standby["active"], masters[0].url.as_str(), "{standby}");
    // A write on the standby is refused, naming the active master.
    let (status, refused) = masters[1].request("POST", "/folds", Some(common::sh("true")));
    assert_eq!(status, 503, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains(&masters[0].url), "{message}");

    let witness = dir.path().join("witness");
    let folds: Vec<Value> = (0..FOLDS)
        .map(|i| {
            let mut spec = common::sh(&format!("echo {i} >> {}; sleep 0.2", witness.display()));
            spec["max_retries"] = json!(0);
            spec
        })
        .collect();
    let ids = masters[0].submit(folds);
    assert_eq!(ids.len(), FOLDS);

    let mut rng = Rng(0x5eed_da7a_0014);
    let mut active = 0;
    let mut takeovers = Vec::new();
    let mut running_at_kills = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(500 + rng.below(2000)));
        running_at_kills += running(&masters[active]);
        masters[active].kill9();
        let other = 1 - active;
        let took = wait_role(&http, &masters[other], "active", LEASE * 3);
        takeovers.push(took);
        // The killed master comes back as the standby.
        masters[active].spawn();
        let back = role(&http, &masters[active]).unwrap();
        assert_eq!(back["role"], "standby", "{back}");
        active = other;
    }
    let millis: Vec<u128> = takeovers.iter().map(|d| d.as_millis()).collect();
    eprintln!("takeover times after kill -9 (lease {LEASE:?}): {millis:?} ms");
    for t in &takeovers {
        assert!(
            *t <= LEASE + Duration::from_millis(500),
            "a takeover took {t:?}, more than the lease {LEASE:?} and a poll: {millis:?}"
        );
    }

    // Every fold done (by the queue's counts, then each fold's own record).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = masters[active].get("/queue");
        let done: u64 = counts["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "done")
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        if done == FOLDS as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "not all folds done: {counts}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for id in &ids {
        let f = masters[active].fold(*id);
        assert_eq!(f["fold"]["state"], "done", "{f}");
        let finals = f["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["detail"].as_str().unwrap_or("").ends_with("fold is done"))
            .count();
        assert_eq!(
            finals, 1,
            "fold {id} has {finals} final results: {}",
            f["events"]
        );
    }
    let text = std::fs::read_to_string(&witness).unwrap();
    let mut runs: HashMap<usize, usize> = HashMap::new();
    for line in text.lines() {
        *runs.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    for i in 0..FOLDS {
        assert!(runs.get(&i).is_some_and(|n| *n >= 1), "fold {i} never ran");
    }
    let reruns = text.lines().count() - FOLDS;
    eprintln!("re-executions: {reruns} (folds running at the kills: {running_at_kills})");
    assert!(
        reruns as u64 <= running_at_kills,
        "{reruns} re-executions, more than the {running_at_kills} folds running at the kills"
    );
    drop(masters);
    drop(daemons);
}
