//! Runner losses on a local runner, through the real master and agent processes: an attempt
//! never runs twice at once (a re-adopted fold whose agent dies is killed before it is rerun),
//! and losses (an agent killed under its folds, a fold killing its own agent) are counted apart
//! from the fold's own retries, up to `[policy] max_losses`.

mod common;

use common::procs::{copies, kill9, live_members};
use common::{sh, Master};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn runner(name: &str, slots: u32) -> String {
    format!(
        "[[runner]]\nname = \"{name}\"\ntransport = \"local\"\nexecutor = \"process\"\n\
         slots = {slots}\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n"
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Samples `copies(marker)` every 20 ms while `f` runs; returns the most seen at once.
fn most_copies_during<T>(marker: &str, f: impl FnOnce() -> T) -> (usize, T) {
    /// Stops the watcher also when `f` panics (else the scope would wait for it forever).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                most = most.max(copies(marker));
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        });
        let out = {
            let _stop = Stop(&stop);
            f()
        };
        (watcher.join().unwrap(), out)
    })
}

fn outcomes(shown: &Value) -> Vec<String> {
    shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"]["kind"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[test]
fn a_readopted_fold_whose_agent_dies_is_killed_at_once_and_rerun_alone() {
    let mut m = Master::start(Some(&runner("local", 2)));
    let dir = m.data_dir();
    let witness = dir.join("witness");
    let marker = format!("readopted-witness-{}", std::process::id());
    // The first run sleeps long (it is killed); the rerun ends at once.
    let script = format!(
        ": {marker}; echo \"start $$ $(date +%s%N)\" >> {w}; \
         if [ -e {w}.again ]; then sleep 0.5; else touch {w}.again; sleep 20; fi; \
         echo \"end $$ $(date +%s%N)\" >> {w}",
        w = witness.display()
    );
    let mut fold = sh(&script);
    // A retry would also rerun it: the kill must not depend on the retry budget.
    fold["max_retries"] = json!(1);
    let id = m.submit(vec![fold])[0];
    m.wait_state(id, "running", Duration::from_secs(20));
    wait_for("the witness start line", Duration::from_secs(10), || {
        !lines(&witness).is_empty()
    });
    let first_pgid: i32 = lines(&witness)[0]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let attempt = m.fold(id)["fold"]["current_attempt"].as_i64().unwrap();
    let old_agent = m.attempt_owner("local", attempt);

    // A master restart: the old agent (its input closed) keeps running the fold, and the new
    // agent watches it for a result; the master re-adopts it.
    m.kill9();
    m.spawn();
    m.wait_event(id, "readopted", Duration::from_secs(20));
    assert!(
        !live_members(first_pgid).is_empty(),
        "the fold still runs under its old agent"
    );

    let (most, (gone_after, shown)) = most_copies_during(&marker, || {
        kill9(old_agent);
        let killed = Instant::now();
        wait_for(
            "the kill of the orphaned fold",
            Duration::from_secs(10),
            || live_members(first_pgid).is_empty(),
        );
        let gone_after = killed.elapsed();
        m.wait_all(&[id], Duration::from_secs(30));
        (gone_after, m.fold(id))
    });
    eprintln!("the orphaned fold's group was gone {gone_after:?} after its agent died");
    assert!(
        gone_after < Duration::from_millis(1500),
        "the orphaned fold's process group lived {gone_after:?} after its agent died"
    );
    assert_eq!(most, 1, "two copies of the fold ran at once");
    assert_eq!(shown["fold"]["state"], "done", "{}", shown["fold"]);
    assert_eq!(
        outcomes(&shown),
        ["lost", "success"],
        "{}",
        shown["attempts"]
    );
    assert_eq!(shown["fold"]["losses"], 1, "{}", shown["fold"]);
    assert_eq!(shown["fold"]["retries_used"], 0, "{}", shown["fold"]);
    // Two starts, one end: the first run never reached its end, the second did.
    let seen = lines(&witness);
    let starts: Vec<&String> = seen.iter().filter(|l| l.starts_with("start")).collect();
    let ends: Vec<&String> = seen.iter().filter(|l| l.starts_with("end")).collect();
    assert_eq!((starts.len(), ends.len()), (2, 1), "{seen:?}");
    let pid = |l: &str| l.split(' ').nth(1).unwrap().to_string();
    assert_eq!(pid(ends[0]), pid(starts[1]), "{seen:?}");
    assert_ne!(pid(starts[0]), pid(starts[1]), "{seen:?}");
}

#[test]
fn a_killed_local_agent_costs_its_folds_no_retries() {
    let m = Master::start(Some(&runner("local", 8)));
    let dir = m.data_dir();
    // Each fold's first run waits to be killed; its rerun ends at once.
    let folds: Vec<Value> = (0..8)
        .map(|i| {
            let again = dir.join(format!("again-{i}"));
            sh(&format!(
                "if [ -e {a} ]; then exit 0; fi; touch {a}; sleep 30",
                a = again.display()
            ))
        })
        .collect();
    let ids = m.submit(folds);
    for id in &ids {
        m.wait_state(*id, "running", Duration::from_secs(20));
    }
    wait_for("every first run", Duration::from_secs(10), || {
        (0..8).all(|i| dir.join(format!("again-{i}")).exists())
    });
    let attempt = m.fold(ids[0])["fold"]["current_attempt"].as_i64().unwrap();
    kill9(m.attempt_owner("local", attempt));
    let ended = m.wait_all(&ids, Duration::from_secs(60));
    for (id, f) in ids.iter().zip(&ended) {
        assert_eq!(f["state"], "done", "fold {id}: {f}");
        assert_eq!(
            (f["retries_used"].as_u64(), f["losses"].as_u64()),
            (Some(0), Some(1)),
            "fold {id}: {f}"
        );
        assert_eq!(outcomes(&m.fold(*id)), ["lost", "success"], "fold {id}");
    }
}

#[test]
fn losses_are_counted_apart_from_retries_up_to_max_losses() {
    let cfg = tempfile::tempdir().unwrap();
    let cfg_file = cfg.path().join("master.toml");
    std::fs::write(&cfg_file, "[policy]\nmax_losses = 2\n").unwrap();
    let inventory = runner("a", 1) + &runner("b", 1);
    let m = Master::start_with(Some(&inventory), &["--config", cfg_file.to_str().unwrap()]);
    let dir = m.data_dir();
    // On runner a, a fold kills its agent on its first two runs, then succeeds: lost twice
    // (within max_losses), with max_retries = 0 it still ends done.
    let count = dir.join("runs-a");
    let mut twice = sh(&format!(
        "n=$(cat {c} 2>/dev/null || echo 0); echo $((n + 1)) > {c}; \
         if [ \"$n\" -lt 2 ]; then kill -9 $PPID; sleep 30; fi; echo ok",
        c = count.display()
    ));
    twice["requirements"] = json!("name == \"a\"");
    // On runner b, a fold that kills its agent every time is held after max_losses.
    let mut always = sh("kill -9 $PPID; sleep 30");
    always["requirements"] = json!("name == \"b\"");
    always["max_retries"] = json!(3);
    let ids = m.submit(vec![twice, always]);
    let ended = m.wait_all(&ids, Duration::from_secs(90));

    assert_eq!(ended[0]["state"], "done", "{}", ended[0]);
    assert_eq!(ended[0]["losses"], 2, "{}", ended[0]);
    assert_eq!(ended[0]["retries_used"], 0, "{}", ended[0]);
    assert_eq!(outcomes(&m.fold(ids[0])), ["lost", "lost", "success"]);

    let held = &ended[1];
    assert_eq!(
        (held["state"].as_str(), held["hold_code"].as_str()),
        (Some("held"), Some("lost_too_often")),
        "{held}"
    );
    assert_eq!(held["losses"], 3, "{held}");
    assert_eq!(
        held["retries_used"], 0,
        "losses leave the retries alone: {held}"
    );
    let reason = held["reason"].as_str().unwrap();
    assert!(
        reason.contains("lost 3 times") && reason.contains("max_losses 2"),
        "{reason}"
    );
    let shown = m.cli_ok(&["fold", "show", &ids[1].to_string()]);
    assert!(shown.contains("lost 3 times"), "{shown}");
}
