//! The pure parts on their own, then real folds run as real processes.
//!
//! CPU-bound folds spin on `time.process_time()` (CPU used) rather than on the wall clock, so
//! the CPU they burn is known however loaded the machine is.

use super::*;
use std::path::Path;
use tempfile::TempDir;

const MIB: u64 = 1 << 20;

// ---- pure parts ----

#[test]
fn cpus_are_written_as_plain_numbers() {
    assert_eq!(format_cpus(1500), "1.5");
    assert_eq!(format_cpus(2000), "2");
    assert_eq!(format_cpus(250), "0.25");
    assert_eq!(format_cpus(1), "0.001");
    assert_eq!(format_cpus(0), "0");
}

#[test]
fn wait_statuses_become_outcomes() {
    assert_eq!(status_outcome(0), Outcome::Success);
    assert_eq!(status_outcome(3 << 8), Outcome::ExitCode { code: 3 });
    assert_eq!(
        status_outcome(libc::SIGSEGV),
        Outcome::Signal {
            signal: libc::SIGSEGV
        }
    );
}

// ---- real folds ----

/// What a fold used (memory, CPU) and the orphans it leaves.
mod usage;

fn request(command: &[&str]) -> (TempDir, ExecRequest) {
    let dir = tempfile::tempdir().unwrap();
    let work_dir = dir.path().canonicalize().unwrap();
    std::fs::create_dir(work_dir.join("input")).unwrap();
    std::fs::create_dir(work_dir.join("output")).unwrap();
    let req = ExecRequest {
        attempt: 42,
        fold: 7,
        runner: "test".into(),
        image: None,
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        input_dir: work_dir.join("input"),
        output_dir: work_dir.join("output"),
        work_dir,
        memory_limit: None,
        millicpus: 1500,
        soft_limit: None,
        hard_limit: None,
        gpus: Vec::new(),
        log_limit: MIB,
        output_limit: MIB,
    };
    (dir, req)
}

fn sh(script: &str) -> (TempDir, ExecRequest) {
    request(&["sh", "-c", script])
}

async fn run_fold(req: ExecRequest) -> ExecResult {
    let (progress, _) = mpsc::unbounded_channel();
    let (_cancel, cancel) = watch::channel(false);
    run(req, progress, cancel).await
}

fn log_text(result: &ExecResult) -> String {
    String::from_utf8_lossy(&result.log).into_owned()
}

/// Alive and not a zombie (the machine's init may not reap orphans promptly).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => {
            let state = text.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn python_spin(seconds: f64) -> String {
    format!("import time\nwhile time.process_time() < {seconds}: pass\n")
}

#[tokio::test]
async fn success_with_outputs_cwd_and_merged_log() {
    let (_dir, req) = sh(r#"
        echo out; echo err >&2
        pwd -P > "$DATARUN_OUTPUT/cwd.txt"
        mkdir -p "$DATARUN_OUTPUT/sub"
        printf 'x,y\n1,2\n' > "$DATARUN_OUTPUT/sub/pred.csv"
        ln -s /etc/passwd "$DATARUN_OUTPUT/link"
        mkfifo "$DATARUN_OUTPUT/fifo"
    "#);
    let work_dir = req.work_dir.clone();
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "log: {}",
        log_text(&result)
    );
    assert_eq!(log_text(&result), "out\nerr\n");
    assert_eq!(result.outputs, ["cwd.txt", "sub/pred.csv"]);
    let out = work_dir.join("output");
    assert_eq!(
        std::fs::read_to_string(out.join("sub/pred.csv")).unwrap(),
        "x,y\n1,2\n"
    );
    let cwd = std::fs::read_to_string(out.join("cwd.txt")).unwrap();
    assert_eq!(Path::new(cwd.trim_end()), work_dir);
    assert!(result.metrics.wall_ms < 5000);
}

#[tokio::test]
async fn environment_is_clean_and_carries_the_grant() {
    let (_dir, mut req) = request(&["env"]);
    req.env.insert("MY_VAR".into(), "hello world".into());
    req.env.insert("LANG".into(), "fr_FR.UTF-8".into());
    req.gpus = vec!["0".into(), "3".into()];
    req.millicpus = 2500;
    let work_dir = req.work_dir.clone();
    let result = run_fold(req).await;
    assert_eq!(result.outcome, Outcome::Success);
    let log = log_text(&result);
    let env: BTreeMap<&str, &str> = log.lines().filter_map(|l| l.split_once('=')).collect();
    let path = |sub: &str| work_dir.join(sub).to_string_lossy().into_owned();
    let home = work_dir.to_string_lossy().into_owned();
    let expected = BTreeMap::from([
        ("PATH", std::env::var("PATH").unwrap()),
        ("HOME", home),
        ("LANG", "fr_FR.UTF-8".into()),
        ("MY_VAR", "hello world".into()),
        ("DATARUN_INPUT", path("input")),
        ("DATARUN_OUTPUT", path("output")),
        ("DATARUN_ATTEMPT", "42".into()),
        ("DATARUN_CPUS", "2.5".into()),
        ("OMP_NUM_THREADS", "3".into()),
        ("CUDA_VISIBLE_DEVICES", "0,3".into()),
    ]);
    let env: BTreeMap<&str, String> = env.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    assert_eq!(env, expected, "the fold sees exactly these variables");
}

#[tokio::test]
async fn no_gpus_means_an_empty_cuda_visible_devices() {
    let (_dir, req) = sh(r#"printf '[%s]' "${CUDA_VISIBLE_DEVICES-unset}""#);
    let result = run_fold(req).await;
    assert_eq!(log_text(&result), "[]");
}

#[tokio::test]
async fn non_zero_exit_and_foreign_signal() {
    let (_dir, req) = sh("exit 3");
    assert_eq!(run_fold(req).await.outcome, Outcome::ExitCode { code: 3 });
    let (_dir, req) = sh("kill -SEGV $$");
    assert_eq!(
        run_fold(req).await.outcome,
        Outcome::Signal {
            signal: libc::SIGSEGV
        }
    );
}

#[tokio::test]
async fn missing_or_unrunnable_program_is_an_error_naming_it() {
    let (_dir, req) = request(&["datarun-no-such-program", "x"]);
    let Outcome::Error { message } = run_fold(req).await.outcome else {
        panic!("not an error")
    };
    assert!(message.contains("datarun-no-such-program"), "{message}");
    assert!(message.contains("No such file"), "{message}");

    let (dir, req) = request(&["./not-executable"]);
    std::fs::write(dir.path().join("not-executable"), "#!/bin/sh\n").unwrap();
    let Outcome::Error { message } = run_fold(req).await.outcome else {
        panic!("not an error")
    };
    assert!(
        message.contains("not-executable") && message.contains("ermission"),
        "{message}"
    );
}

#[tokio::test]
async fn soft_limit_terminates() {
    let (_dir, mut req) = request(&["sleep", "30"]);
    req.soft_limit = Some(Duration::from_millis(300));
    let result = run_fold(req).await;
    assert_eq!(result.outcome, Outcome::TimedOutSoft);
    assert!(
        (300..5000).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
}

#[tokio::test]
async fn hard_limit_kills_a_fold_that_ignores_sigterm() {
    let (_dir, mut req) = sh(r#"trap "" TERM; while true; do sleep 0.1; done"#);
    req.soft_limit = Some(Duration::from_millis(200));
    req.hard_limit = Some(Duration::from_millis(800));
    let result = run_fold(req).await;
    assert_eq!(result.outcome, Outcome::TimedOutHard);
    assert!(
        (800..3000).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
}

#[tokio::test]
async fn hard_limit_alone_kills() {
    let (_dir, mut req) = request(&["sleep", "30"]);
    req.hard_limit = Some(Duration::from_millis(300));
    let result = run_fold(req).await;
    assert_eq!(result.outcome, Outcome::TimedOutHard);
    assert!(
        (300..3000).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
}

#[tokio::test]
async fn cancel_kills_quickly_and_progress_flows() {
    let (_dir, req) = request(&["sleep", "30"]);
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cancel_tx.send(true).unwrap();
        cancel_tx // kept alive until the fold is over
    });
    let result = run(req, progress_tx, cancel_rx).await;
    drop(canceller.await);
    assert_eq!(result.outcome, Outcome::Cancelled);
    assert!(
        (1500..4000).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
    let mut reports = Vec::new();
    while let Ok(p) = progress_rx.try_recv() {
        reports.push(p);
    }
    assert!(!reports.is_empty() && reports.len() <= 2, "{reports:?}");
    assert!((900..2500).contains(&reports[0].wall_ms), "{reports:?}");
    assert!(reports[0].memory > 0 && reports[0].peak_memory >= reports[0].memory);
}

#[tokio::test]
async fn already_cancelled_fold_is_killed_at_once() {
    let (_dir, req) = request(&["sleep", "30"]);
    let (progress, _) = mpsc::unbounded_channel();
    let (_cancel_tx, cancel) = watch::channel(true);
    let result = run(req, progress, cancel).await;
    assert_eq!(result.outcome, Outcome::Cancelled);
    assert!(result.metrics.wall_ms < 2000, "{:?}", result.metrics);
}

#[tokio::test]
async fn log_keeps_the_tail_of_a_long_output() {
    let script = "import sys\nsys.stdout.write(''.join('%07d\\n' % i for i in range(131072)))\n";
    let (_dir, mut req) = request(&["python3", "-c", script]);
    req.log_limit = 1000;
    let result = run_fold(req).await;
    assert_eq!(result.outcome, Outcome::Success);
    let log = log_text(&result);
    let marker = format!(
        "[datarun: {} earlier bytes of log dropped]\n",
        (1 << 20) - 1000
    );
    assert!(log.starts_with(&marker), "{}", &log[..80.min(log.len())]);
    assert_eq!(log.len(), marker.len() + 1000);
    assert!(log.ends_with("0131070\n0131071\n"));
}

#[tokio::test]
async fn background_processes_die_with_the_leader() {
    let (_dir, req) = sh(r#"sleep 100 & echo $! > "$DATARUN_OUTPUT/pid"; echo hi"#);
    let output_dir = req.output_dir.clone();
    let result = run_fold(req).await;
    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(log_text(&result), "hi\n");
    assert!(
        result.metrics.wall_ms < 1500,
        "log waited for the stray: {:?}",
        result.metrics
    );
    let pid: i32 = std::fs::read_to_string(output_dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone_by = std::time::Instant::now() + Duration::from_secs(2);
    while alive(pid) && std::time::Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the fold's background sleep {pid} outlived it");
}

#[tokio::test]
async fn outputs_over_the_limit_fail_a_successful_fold() {
    let (dir, mut req) = sh(r#"head -c 2000 /dev/zero > "$DATARUN_OUTPUT/big.bin""#);
    req.output_limit = 1000;
    let output_dir = req.output_dir.clone();
    let result = run_fold(req).await;
    assert_eq!(
        result.outcome,
        Outcome::OutputLimit {
            bytes: 2000,
            limit: 1000,
            entries: None
        }
    );
    assert!(result.outputs.is_empty(), "none is reported");
    assert!(!output_dir.join("big.bin").exists(), "and they are deleted");
    drop(dir);

    let (_dir, mut req) = sh(r#"head -c 2000 /dev/zero > "$DATARUN_OUTPUT/big.bin"; exit 4"#);
    req.output_limit = 1000;
    let result = run_fold(req).await;
    assert_eq!(result.outcome, Outcome::ExitCode { code: 4 });
    assert!(result.outputs.is_empty());
}

#[tokio::test]
async fn a_fold_writing_past_the_output_limit_is_killed_while_it_runs() {
    let (_dir, mut req) = sh(
        r#"while true; do head -c 100000 /dev/zero >> "$DATARUN_OUTPUT/grow"; sleep 0.02; done"#,
    );
    req.output_limit = 1 << 20;
    let result = run_fold(req).await;
    let Outcome::OutputLimit { bytes, limit, .. } = result.outcome else {
        panic!("{:?}", result.outcome)
    };
    assert_eq!(limit, 1 << 20);
    assert!(
        bytes > limit && bytes < 4 << 20,
        "killed soon after it went over: {bytes}"
    );
    assert!(result.metrics.wall_ms < 5000, "{:?}", result.metrics);
    assert!(result.outputs.is_empty());
}

#[test]
fn programs_are_found_like_execvp_does() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, cwd) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("w"),
    );
    for dir in [&a, &b, &cwd] {
        std::fs::create_dir(dir).unwrap();
    }
    let put = |path: &Path, mode: u32| {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    put(&a.join("tool"), 0o644); // not executable: skipped
    put(&b.join("tool"), 0o755);
    put(&cwd.join("here"), 0o755);
    std::fs::create_dir(a.join("dir")).unwrap();
    let path = std::env::join_paths([&a, &b]).unwrap();
    let find = |program: &str, path: &OsStr| resolve_program(OsStr::new(program), Some(path), &cwd);

    assert_eq!(find("tool", &path).unwrap(), b.join("tool"));
    assert_eq!(find("./here", &path).unwrap(), cwd.join("here"));
    assert_eq!(
        find("here", OsStr::new("/nonexistent:")).unwrap(),
        cwd.join("here"),
        "an empty entry is the working directory"
    );
    assert_eq!(
        resolve_program(OsStr::new("sh"), None, &cwd)
            .unwrap()
            .file_name()
            .unwrap(),
        "sh",
        "no PATH: the default one"
    );
    let missing = find("datarun-no-such-program", &path).unwrap_err();
    assert!(
        missing.contains("datarun-no-such-program") && missing.contains("not found in PATH"),
        "{missing}"
    );
    let refused = find("tool", a.as_os_str()).unwrap_err();
    assert!(
        refused.contains("ermission") && refused.contains("a/tool"),
        "{refused}"
    );
    let dir = find("dir", a.as_os_str()).unwrap_err();
    assert!(
        dir.contains("ermission"),
        "a directory is not a program: {dir}"
    );
    assert!(find("./nothing", &path)
        .unwrap_err()
        .contains("No such file"));
    assert!(find("", &path).is_err());
}

#[test]
fn a_found_program_is_remembered_for_a_moment_and_checked_on_every_use() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir(dir).unwrap();
    }
    let put = |path: &Path| {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let path = std::env::join_paths([&a, &b]).unwrap();
    let find = || resolve_program(OsStr::new("remembered-tool"), Some(&path), tmp.path());
    put(&b.join("remembered-tool"));
    assert_eq!(find().unwrap(), b.join("remembered-tool"));
    // Installed in an earlier directory: the remembered one still serves for the moment...
    put(&a.join("remembered-tool"));
    assert_eq!(find().unwrap(), b.join("remembered-tool"));
    // ...and once it has passed, PATH is looked along again.
    std::thread::sleep(crate::agent::recent::REMEMBER);
    assert_eq!(find().unwrap(), a.join("remembered-tool"));
    // Removed: noticed at once, whatever is remembered.
    std::fs::remove_file(a.join("remembered-tool")).unwrap();
    assert_eq!(find().unwrap(), b.join("remembered-tool"));
    // Not executable any more: noticed at once too.
    std::fs::set_permissions(
        b.join("remembered-tool"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(find().is_err());
}

/// Threads of this process blocked in `waitid` or `wait4` (from each one's
/// `/proc/self/task/TID/syscall`, whose first field is the call it sleeps in).
fn threads_waiting() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("syscall")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<i64>().ok())
        .filter(|nr| *nr == libc::SYS_waitid || *nr == libc::SYS_wait4)
        .count()
}

/// A running fold is waited for on its pidfd, not by a blocking thread of its own: while
/// many long folds run, no thread sleeps in a wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_folds_hold_no_thread_each() {
    const FOLDS: usize = 32;
    let (mut dirs, mut tasks) = (Vec::new(), Vec::new());
    for _ in 0..FOLDS {
        let (dir, req) = request(&["sleep", "1.5"]);
        dirs.push(dir);
        tasks.push(tokio::spawn(run_fold(req)));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let waiting = threads_waiting();
    for task in tasks {
        let result = task.await.unwrap();
        assert_eq!(result.outcome, Outcome::Success, "{}", log_text(&result));
    }
    assert_eq!(
        waiting, 0,
        "{waiting} threads slept in a wait while {FOLDS} folds ran"
    );
}
