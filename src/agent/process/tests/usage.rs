//! What a fold used, measured on real processes: peak memory and the memory cap, CPU time
//! of the whole tree, and the orphans it hands to the agent (measured, then reaped).

use super::*;

#[tokio::test]
async fn peak_memory_of_a_200_mib_fold() {
    let script = "import time\nx = b'a' * (200 * 1024 * 1024)\ntime.sleep(0.5)\n";
    let (_dir, req) = request(&["python3", "-c", script]);
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "log: {}",
        log_text(&result)
    );
    let peak = result.metrics.peak_memory;
    eprintln!("peak for 200 MiB: {:.1} MiB", peak as f64 / MIB as f64);
    assert!((170 * MIB..230 * MIB).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn over_the_memory_limit_is_out_of_memory() {
    let script = "import time\nx = b'a' * (400 * 1024 * 1024)\ntime.sleep(5)\n";
    let (_dir, mut req) = request(&["python3", "-c", script]);
    req.memory_limit = Some(150_000_000);
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::OutOfMemory,
        "log: {}",
        log_text(&result)
    );
    assert!(
        result.metrics.peak_memory > 150_000_000,
        "{:?}",
        result.metrics
    );
    assert!(result.metrics.wall_ms < 4000, "{:?}", result.metrics);
}

#[tokio::test]
async fn a_forking_fold_is_measured_and_killed_at_its_memory_cap() {
    // 90 MiB in a child the shell waits for, 90 MiB in an orphan whose subshell is gone at
    // once (re-parented away from the leader's tree): only together are they over the cap.
    let hold = |name: &str| {
        format!(
            "import os, time\n\
             open(os.environ['DATARUN_OUTPUT'] + '/{name}', 'w').write(str(os.getpid()))\n\
             x = b'a' * (90 * 1024 * 1024)\ntime.sleep(30)\n"
        )
    };
    let (_dir, mut req) = sh(r#"(python3 -c "$ORPHAN" &)
        python3 -c "$CHILD""#);
    req.env.insert("ORPHAN".into(), hold("orphan"));
    req.env.insert("CHILD".into(), hold("child"));
    req.memory_limit = Some(150 * MIB);
    let output_dir = req.output_dir.clone();
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::OutOfMemory,
        "log: {}",
        log_text(&result)
    );
    assert!(
        result.metrics.peak_memory > 150 * MIB,
        "{:?}",
        result.metrics
    );
    assert!(result.metrics.wall_ms < 10_000, "{:?}", result.metrics);
    for name in ["orphan", "child"] {
        let pid: i32 = std::fs::read_to_string(output_dir.join(name))
            .unwrap()
            .parse()
            .unwrap();
        let gone_by = std::time::Instant::now() + Duration::from_secs(2);
        while alive(pid) && std::time::Instant::now() < gone_by {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "the fold's {name} {pid} outlived it");
    }
}

#[tokio::test]
async fn orphans_handed_to_the_agent_are_reaped() {
    // The subshell exits at once, so the inner sh is re-parented to this process (the
    // agent, a child subreaper); it ends while the fold still runs and must not stay a zombie.
    let (_dir, req) = sh(r#"(sh -c 'echo $$ > "$DATARUN_OUTPUT/orphan"; sleep 0.2' &)
        sleep 1.5"#);
    let output_dir = req.output_dir.clone();
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "log: {}",
        log_text(&result)
    );
    let pid: i32 = std::fs::read_to_string(output_dir.join("orphan"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = procfs::stat(pid);
    assert!(
        stat.is_none_or(|s| s.ppid != std::process::id() as i32),
        "orphan {pid} was left unreaped: {stat:?}"
    );
}

#[tokio::test]
async fn cpu_time_of_a_busy_fold() {
    let (_dir, req) = request(&["python3", "-c", &python_spin(1.0)]);
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "log: {}",
        log_text(&result)
    );
    let m = &result.metrics;
    eprintln!("busy 1 s: cpu {} ms, wall {} ms", m.cpu_ms, m.wall_ms);
    // 1 s of spinning plus the interpreter's start.
    assert!((980..1300).contains(&m.cpu_ms), "{m:?}");
    // A single thread cannot use more CPU than wall time.
    assert!(m.cpu_ms <= m.wall_ms + 20, "{m:?}");
}

#[tokio::test]
async fn cpu_time_counts_the_whole_tree() {
    let spin = python_spin(1.0);
    let script = format!(r#"python3 -c "{spin}" & python3 -c "{spin}"; wait"#);
    let (_dir, req) = sh(&script);
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "log: {}",
        log_text(&result)
    );
    eprintln!("two busy children: {:?}", result.metrics);
    assert!(
        (1950..2600).contains(&result.metrics.cpu_ms),
        "{:?}",
        result.metrics
    );
}

#[tokio::test]
async fn cpu_time_counts_orphans_the_leader_never_waited_for() {
    // The subshell exits at once, so the background python is an orphan: wait4's rusage of
    // the leader never includes it, only the /proc samples do.
    let spin = python_spin(1.0);
    let script = format!(
        r#"(python3 -c "{spin}" && touch done &)
        python3 -c "{spin}"
        while [ ! -e done ]; do sleep 0.05; done"#
    );
    let (_dir, req) = sh(&script);
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "log: {}",
        log_text(&result)
    );
    eprintln!("busy child + busy orphan: {:?}", result.metrics);
    assert!(
        (1750..2600).contains(&result.metrics.cpu_ms),
        "{:?}",
        result.metrics
    );
}
