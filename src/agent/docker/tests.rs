//! The pure container spec first, then real folds in real containers of the local engine.
//!
//! The engine tests need Docker and the test image `datarun/busybox:test` (built on demand by
//! `images/build-busybox.sh`); without an engine they fail, loudly, instead of skipping.
//! Attempt ids are derived from the test process id so that concurrent test runs on the same
//! engine never share a container name.

use super::*;
use crate::model::FoldId;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use tempfile::TempDir;

const MIB: u64 = 1 << 20;
const IMAGE: &str = "datarun/busybox:test";
/// No engine test may take longer than this; a hang is a failure, not a stuck CI job.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

mod adopt;
mod config;
mod grants;
mod usage;
mod warm;

// ---- real folds ----

fn next_attempt() -> AttemptId {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    7_000_000_000_000 + i64::from(std::process::id()) * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn executor_with(opts: DockerOptions) -> DockerExecutor {
    let exec = DockerExecutor::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("these tests need a running Docker engine: {e}"));
    if exec.docker.inspect_image(IMAGE).await.is_err() {
        static BUILD: Mutex<()> = Mutex::new(());
        tokio::task::spawn_blocking(|| {
            let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/build-busybox.sh");
            let status = std::process::Command::new(&script)
                .status()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(status.success(), "{} failed", script.display());
        })
        .await
        .unwrap();
    }
    exec
}

async fn executor() -> DockerExecutor {
    executor_with(DockerOptions::default()).await
}

/// A request running `sh -c script` with an input file, in its own temporary directory.
fn request(script: &str) -> (TempDir, ExecRequest) {
    let dir = tempfile::tempdir().unwrap();
    let work_dir = dir.path().canonicalize().unwrap();
    std::fs::create_dir(work_dir.join("input")).unwrap();
    std::fs::create_dir(work_dir.join("output")).unwrap();
    std::fs::write(work_dir.join("input/data.txt"), "hello input\n").unwrap();
    let attempt = next_attempt();
    let req = ExecRequest {
        attempt,
        fold: attempt as FoldId,
        runner: "test-runner".into(),
        image: Some(IMAGE.into()),
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::from([("FOO".into(), "bar baz".into())]),
        input_dir: work_dir.join("input"),
        output_dir: work_dir.join("output"),
        work_dir,
        memory_limit: Some(256 * MIB),
        millicpus: 1000,
        soft_limit: None,
        hard_limit: Some(Duration::from_secs(60)),
        gpus: vec![],
        log_limit: 64 << 10,
        output_limit: MIB,
    };
    (dir, req)
}

struct Ran {
    result: ExecResult,
    took: Duration,
    progress: Vec<Progress>,
}

impl Ran {
    fn log(&self) -> String {
        String::from_utf8_lossy(&self.result.log).into_owned()
    }
}

async fn run_with(exec: &DockerExecutor, req: ExecRequest, cancel: watch::Receiver<bool>) -> Ran {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = std::time::Instant::now();
    let result = tokio::time::timeout(TEST_TIMEOUT, exec.run(req, tx, cancel))
        .await
        .expect("the fold did not end in time");
    let took = t0.elapsed();
    let mut progress = Vec::new();
    while let Ok(p) = rx.try_recv() {
        progress.push(p);
    }
    Ran {
        result,
        took,
        progress,
    }
}

async fn run(exec: &DockerExecutor, req: ExecRequest) -> Ran {
    let (_keep, cancel) = watch::channel(false);
    run_with(exec, req, cancel).await
}

async fn assert_gone(exec: &DockerExecutor, attempt: AttemptId) {
    match exec
        .docker
        .inspect_container(
            &spec::container_name(&DockerOptions::default().namespace, attempt),
            None,
        )
        .await
    {
        Err(e) if status(&e) == Some(404) => {}
        other => panic!("the container of attempt {attempt} is still there: {other:?}"),
    }
}

/// Waits until the attempt's container is listed in the wanted state.
async fn await_listed(exec: &DockerExecutor, attempt: AttemptId, alive: bool) {
    let t0 = std::time::Instant::now();
    loop {
        let list = exec.list_attempt_containers().await.unwrap();
        if list.contains(&(attempt, alive)) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "attempt {attempt} never listed as alive={alive}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `run()` in a task and kills the task once the container runs: the agent "dies",
/// the container lives on.
async fn run_and_abandon(exec: &DockerExecutor, req: ExecRequest) -> std::time::Instant {
    let attempt = req.attempt;
    let t0 = std::time::Instant::now();
    let task = {
        let exec = exec.clone();
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::unbounded_channel();
            let (_keep, cancel) = watch::channel(false);
            exec.run(req, tx, cancel).await
        })
    };
    await_listed(exec, attempt, true).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    t0
}

#[tokio::test]
async fn a_fold_runs_as_the_fold_user_with_its_env_and_outputs() {
    let exec = executor().await;
    let (_dir, req) = request(
        r#"id -u; echo "FOO=$FOO ATTEMPT=$DATARUN_ATTEMPT CPUS=$DATARUN_CPUS OMP=$OMP_NUM_THREADS HOME=$HOME"
           echo "cwd=$(pwd)"; cat input/data.txt
           echo to-stderr >&2
           echo result > "$DATARUN_OUTPUT/pred.csv"; mkdir output/sub; echo x > output/sub/more.txt"#,
    );
    let attempt = req.attempt;
    let output_dir = req.output_dir.clone();
    let ran = run(&exec, req).await;
    let log = ran.log();
    assert_eq!(ran.result.outcome, Outcome::Success, "log: {log}");
    // stdout and stderr are separate streams to the engine: only each one's order is kept.
    assert!(log.contains("to-stderr\n"), "{log}");
    let log = log.replacen("to-stderr\n", "", 1);
    assert!(log.starts_with("1000\n"), "runs as uid 1000: {log}");
    assert!(
        log.contains(&format!(
            "FOO=bar baz ATTEMPT={attempt} CPUS=1 OMP=1 HOME=/tmp"
        )),
        "{log}"
    );
    assert!(log.contains("cwd=/datarun\nhello input\n"), "{log}");
    assert_eq!(ran.result.outputs, ["pred.csv", "sub/more.txt"]);
    assert_eq!(
        std::fs::read_to_string(output_dir.join("pred.csv")).unwrap(),
        "result\n"
    );
    assert!(ran.result.metrics.wall_ms < 10_000);
    assert_gone(&exec, attempt).await;
    eprintln!(
        "a trivial fold: run() took {:?}, wall {} ms",
        ran.took, ran.result.metrics.wall_ms
    );
}

#[tokio::test]
async fn create_to_exit_of_a_trivial_fold() {
    let exec = executor().await;
    let mut took = Vec::new();
    for _ in 0..3 {
        let (_dir, req) = request("true");
        let ran = run(&exec, req).await;
        assert_eq!(ran.result.outcome, Outcome::Success);
        took.push((ran.took.as_millis(), ran.result.metrics.wall_ms));
    }
    eprintln!("trivial fold, (run() ms, engine wall ms) x3: {took:?}");
    assert!(took.iter().all(|(ms, _)| *ms < 10_000));
}

#[tokio::test]
async fn a_non_zero_exit_is_an_exit_code() {
    let exec = executor().await;
    let (_dir, req) = request("echo failing; exit 3");
    let ran = run(&exec, req).await;
    assert_eq!(ran.result.outcome, Outcome::ExitCode { code: 3 });
    assert_eq!(ran.log(), "failing\n");
}

#[tokio::test]
async fn there_is_no_network() {
    let exec = executor().await;
    let (_dir, req) = request(
        r#"echo "nets: $(ls /sys/class/net | tr '\n' ' ')"
           wget -q -T 3 -O- http://1.1.1.1/ >/dev/null 2>&1 && echo WGET-OK || echo WGET-FAIL
           nc -w 2 1.1.1.1 53 </dev/null >/dev/null 2>&1 && echo NC-OK || echo NC-FAIL
           ip link"#,
    );
    let ran = run(&exec, req).await;
    let log = ran.log();
    assert_eq!(ran.result.outcome, Outcome::Success, "{log}");
    assert!(log.contains("nets: lo \n"), "{log}");
    assert!(
        log.contains("WGET-FAIL") && log.contains("NC-FAIL"),
        "{log}"
    );
    assert!(!log.contains("eth0"), "{log}");
}

#[tokio::test]
async fn only_tmp_and_the_output_are_writable_and_the_input_is_read_only() {
    let exec = executor().await;
    let (_dir, req) = request(
        r#"check() { if "$@" 2>/dev/null; then echo "ok: $*"; else echo "refused: $*"; fi; }
           check touch /x
           check touch /bin/x
           check touch /datarun/x
           check touch x
           check touch "$DATARUN_INPUT/x"
           check rm "$DATARUN_INPUT/data.txt"
           check sh -c "echo changed > $DATARUN_INPUT/data.txt"
           check touch /tmp/x
           check touch "$DATARUN_OUTPUT/x"
           check cat "$DATARUN_INPUT/data.txt""#,
    );
    let input = req.input_dir.clone();
    let ran = run(&exec, req).await;
    let log = ran.log();
    assert_eq!(ran.result.outcome, Outcome::Success, "{log}");
    for refused in [
        "touch /x",
        "touch /bin/x",
        "touch /datarun/x",
        "touch x",
        "touch /datarun/input/x",
        "rm /datarun/input/data.txt",
    ] {
        assert!(
            log.contains(&format!("refused: {refused}\n")),
            "{refused}: {log}"
        );
    }
    assert!(log.contains("refused: sh -c echo changed"), "{log}");
    for allowed in [
        "touch /tmp/x",
        "touch /datarun/output/x",
        "cat /datarun/input/data.txt",
    ] {
        assert!(
            log.contains(&format!("ok: {allowed}\n")),
            "{allowed}: {log}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(input.join("data.txt")).unwrap(),
        "hello input\n"
    );
    assert_eq!(ran.result.outputs, ["x"]);
}

#[tokio::test]
async fn cancel_kills_quickly_and_removes_the_container() {
    let exec = executor().await;
    let (_dir, req) = request("echo started; sleep 60");
    let attempt = req.attempt;
    let (cancel_tx, cancel) = watch::channel(false);
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel_tx.send(true).unwrap();
        cancel_tx
    });
    let ran = run_with(&exec, req, cancel).await;
    let _ = canceller.await;
    assert_eq!(ran.result.outcome, Outcome::Cancelled);
    assert!(ran.took < Duration::from_secs(6), "took {:?}", ran.took);
    assert_eq!(ran.log(), "started\n");
    assert_gone(&exec, attempt).await;
}

#[tokio::test]
async fn a_missing_image_is_an_error_naming_it() {
    let exec = executor().await;
    let (_dir, mut req) = request("true");
    req.image = Some("datarun/no-such-image:never".into());
    let ran = run(&exec, req).await;
    let Outcome::ImageMissing { image, message } = &ran.result.outcome else {
        panic!("{:?}", ran.result.outcome)
    };
    assert_eq!(image, "datarun/no-such-image:never");
    assert!(message.contains("datarun/no-such-image:never"), "{message}");
    assert!(
        message.contains("load it with `datarun image load FILE.tar`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_long_log_keeps_its_tail() {
    let exec = executor().await;
    // About 2.4 MB, more than the engine's log file keeps before it rotates.
    let (_dir, mut req) = request(
        r#"i=0; while [ $i -lt 30000 ]; do echo "line $i ................................................................"; i=$((i+1)); done; echo last-line"#,
    );
    req.log_limit = 4096;
    let ran = run(&exec, req).await;
    let log = ran.log();
    assert_eq!(ran.result.outcome, Outcome::Success);
    assert!(
        log.starts_with("[datarun: "),
        "{}",
        &log[..100.min(log.len())]
    );
    let end = &log[log.len().saturating_sub(300)..];
    assert!(
        log.ends_with("line 29999 ................................................................\nlast-line\n"),
        "the log ends with {end:?} (took {:?})",
        ran.took
    );
    assert!(log.len() < 4096 + 100);
}

#[tokio::test]
async fn attempt_containers_are_listed_and_removed() {
    let exec = executor().await;
    let (_dir, req) = request("sleep 60");
    let attempt = req.attempt;
    run_and_abandon(&exec, req).await;
    assert!(exec
        .list_attempt_containers()
        .await
        .unwrap()
        .contains(&(attempt, true)));
    exec.remove_attempt(attempt).await.unwrap();
    let list = exec.list_attempt_containers().await.unwrap();
    assert!(list.iter().all(|(a, _)| *a != attempt), "{list:?}");
    assert_gone(&exec, attempt).await;
    exec.remove_attempt(attempt)
        .await
        .expect("removing twice is fine");
}

#[tokio::test]
async fn an_image_tarball_is_loaded() {
    let exec = executor().await;
    let tag = format!("datarun/busybox:load-test-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("image.tar");
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    docker(&["tag", IMAGE, &tag]);
    docker(&["save", "-o", tarball.to_str().unwrap(), &tag]);
    docker(&["rmi", &tag]);
    let loaded = exec.load_image(&tarball).await;
    let present = exec.docker.inspect_image(&tag).await.is_ok();
    let _ = std::process::Command::new("docker")
        .args(["rmi", &tag])
        .output();
    assert_eq!(loaded.unwrap(), [tag.as_str()]);
    assert!(present, "{tag} is in the engine after the load");

    std::fs::write(&tarball, "not a tarball").unwrap();
    assert!(exec.load_image(&tarball).await.is_err());
    let missing = exec
        .load_image(&dir.path().join("nope.tar"))
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("nope.tar"), "{missing}");
}

#[tokio::test]
async fn the_engine_version_is_reported() {
    let exec = executor().await;
    let version = exec.engine_version().await.unwrap();
    assert!(version.contains("(API 1."), "{version}");
}
