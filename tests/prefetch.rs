//! A runner's `prefetch` through the real master and agent: folds queued on the agent behind
//! those it runs start the moment a slot frees, never more at once than the slots; a queued
//! fold removed ends without running; an agent daemon forgets its queue when a new master says
//! hello, and that master requeues those folds, each run exactly once.

mod common;

use common::daemon::Daemon;
use common::{sh, Master};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn runner(slots: u32, prefetch: u32) -> String {
    format!("[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = {slots}\nprefetch = {prefetch}\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n")
}

/// A fold that writes when it starts and ends (nanoseconds) into `dir/INDEX`, appending, so
/// a fold run twice shows two lines.
fn witnessed(dir: &Path, i: usize, seconds: f64) -> Value {
    let file = dir.join(i.to_string());
    let f = file.display();
    sh(&format!(
        "s=$(date +%s%N); sleep {seconds}; echo \"$s $(date +%s%N)\" >> {f}"
    ))
}

/// Each fold's (start, end) lines.
fn runs(dir: &Path, i: usize) -> Vec<(u128, u128)> {
    std::fs::read_to_string(dir.join(i.to_string()))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (s, e) = l.split_once(' ').expect("two times");
            (s.parse().unwrap(), e.parse().unwrap())
        })
        .collect()
}

/// The most intervals open at one instant.
fn most_at_once(intervals: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    // An end and a start at the same nanosecond: the end first.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The local runner's queued attempts, as `GET /runners` shows them.
fn queued(m: &Master) -> Vec<i64> {
    m.get("/runners")["runners"][0]["queued"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_i64().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn queued_folds_start_as_slots_free_and_never_exceed_the_slots() {
    let m = Master::start(Some(&runner(2, 4)));
    m.wait_ready(1);
    let w = tempfile::tempdir().unwrap();
    let n = 16;
    let ids = m.submit((0..n).map(|i| witnessed(w.path(), i, 0.3)).collect());
    // While they run, the agent holds folds queued behind the two running, at most 4.
    let mut most_queued = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.iter().any(|&id| m.fold(id)["fold"]["state"] != "done") {
        assert!(Instant::now() < deadline, "the folds did not end");
        let q = queued(&m);
        most_queued = most_queued.max(q.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        (1..=4).contains(&most_queued),
        "folds were queued on the agent, within prefetch: {most_queued}"
    );
    let all: Vec<(u128, u128)> = (0..n)
        .map(|i| {
            let r = runs(w.path(), i);
            assert_eq!(r.len(), 1, "fold {i} ran once: {r:?}");
            r[0]
        })
        .collect();
    assert_eq!(most_at_once(&all), 2, "never more than the 2 slots at once");
}

#[test]
fn a_removed_queued_fold_never_runs_and_a_new_master_requeues_the_queue() {
    // An agent daemon outlives the master: it keeps running fold 0 while a new master says
    // hello, and forgets the folds queued for the old one, which the new master requeues.
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, socket) = Daemon::start(dir.path(), "u1");
    let inventory = format!(
        "[[runner]]\nname = \"u1\"\ntransport = \"unix\"\nsocket = \"{}\"\nexecutor = \"process\"\nslots = 1\nprefetch = 2\ncpus = 2\nmemory = \"1G\"\nqueues = [\"*\"]\n",
        socket.display()
    );
    let mut m = Master::start(Some(&inventory));
    m.wait_ready(1);
    let w = dir.path().join("witness");
    std::fs::create_dir(&w).unwrap();
    let ids = m.submit((0..4).map(|i| witnessed(&w, i, 2.0)).collect());
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued(&m).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "nothing was queued: {}",
            m.get("/runners")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Fold 0 runs; 1 and 2 are queued behind it. Remove 2: it ends without running.
    m.wait_state(ids[0], "running", Duration::from_secs(20));
    m.cli_ok(&["queue", "remove", &ids[2].to_string()]);
    m.wait_state(ids[2], "removed", Duration::from_secs(20));
    m.kill9();
    m.spawn();
    let ended = m.wait_all(&[ids[0], ids[1], ids[3]], Duration::from_secs(60));
    for f in &ended {
        assert_eq!(f["state"], "done", "{f}");
    }
    assert_eq!(
        ended[0]["attempts"], 1,
        "fold 0 re-adopted, not rerun: {}",
        ended[0]
    );
    for i in [0, 1, 3] {
        assert_eq!(runs(&w, i).len(), 1, "fold {i} ran exactly once");
    }
    assert!(runs(&w, 2).is_empty(), "the removed queued fold never ran");
    let all: Vec<(u128, u128)> = [0, 1, 3].iter().map(|&i| runs(&w, i)[0]).collect();
    assert_eq!(most_at_once(&all), 1, "one slot: one at a time");
    assert_eq!(
        m.fold(ids[1])["fold"]["losses"],
        0,
        "a queued attempt forgotten is no loss: {}",
        m.fold(ids[1])
    );
}
