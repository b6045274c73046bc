//! Warm containers on the real engine: a fold run warm ends as it would cold, under its own
//! grant, its time counted from the go; a container serves one fold; a restarted agent leaves
//! none of its predecessor's idle containers; a claimed container is adopted.
//!
//! The warm command is a shell that waits for its go when `DATARUN_WARM` is set (a cold
//! container of the same command runs at once), then runs the fold's `input/body.sh`.

use super::*;
use crate::inventory::WarmSpec;

const WAIT_FOR_GO: &str = r#"if [ -n "$DATARUN_WARM" ]; then touch "$DATARUN_OUTPUT/.datarun-warm-ready"; until [ -e "$DATARUN_WARM" ]; do sleep 0.02; done; fi; sh input/body.sh"#;

fn warm_command() -> Vec<String> {
    vec!["sh".into(), "-c".into(), WAIT_FOR_GO.into()]
}

struct Pool {
    exec: DockerExecutor,
    _dir: TempDir,
}

impl Drop for Pool {
    /// Leaves nothing of the namespace on the shared engine, even when the test failed.
    fn drop(&mut self) {
        if let Some(p) = &self.exec.warm {
            p.abandon();
        }
        let filter = format!("label={LABEL_NAMESPACE}={}", self.exec.opts.namespace);
        let ids = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

async fn assert_gone_in(exec: &DockerExecutor, attempt: AttemptId) {
    match exec
        .docker
        .inspect_container(&exec.container_name(attempt), None)
        .await
    {
        Err(e) if status(&e) == Some(404) => {}
        other => panic!("the container of attempt {attempt} is still there: {other:?}"),
    }
}

fn namespace() -> String {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    format!(
        "warm{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn spec(count: u32) -> WarmSpec {
    WarmSpec {
        image: IMAGE.into(),
        command: warm_command(),
        count,
        memory: 128 * MIB,
    }
}

async fn pool_in(namespace: &str, count: u32) -> Pool {
    let exec = executor_with(DockerOptions {
        namespace: namespace.to_string(),
        ..DockerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let exec = exec.with_warm(spec(count), dir.path().join("warm")).await;
    await_ready(&exec, count as usize).await;
    Pool { exec, _dir: dir }
}

async fn pool(count: u32) -> Pool {
    pool_in(&namespace(), count).await
}

/// Waits until `n` warm containers wait for a fold.
async fn await_ready(exec: &DockerExecutor, n: usize) {
    let t0 = std::time::Instant::now();
    loop {
        let ready = exec.warm.as_ref().map_or(0, |p| p.waiting_count());
        if ready >= n {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{n} warm containers never got ready ({ready})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fold of the warm command running `body` (in its inputs).
fn warm_request(body: &str) -> (TempDir, ExecRequest) {
    let (dir, mut req) = request("");
    req.command = warm_command();
    std::fs::write(req.input_dir.join("body.sh"), body).unwrap();
    (dir, req)
}

fn claimed(req: &ExecRequest) -> bool {
    req.work_dir.join("warm.json").exists()
}

#[tokio::test]
async fn a_warm_fold_ends_as_the_cold_one_with_the_same_outputs() {
    let pool = pool(1).await;
    let body = r#"echo "input: $(cat input/data.txt)"; id -u
        cat input/data.txt > output/copy.txt; mkdir output/sub; echo x > output/sub/more.txt
        touch /tmp/scratch && echo tmp-ok; touch /etc/x 2>/dev/null || echo root-ro; exit 3"#;
    // The same command on an executor without warm containers: cold.
    let (_cold_dir, cold_req) = warm_request(body);
    let cold_exec = executor().await;
    let cold_ran = run(&cold_exec, cold_req.clone()).await;
    assert!(!claimed(&cold_req));
    let (_warm_dir, warm) = warm_request(body);
    let warm_ran = run(&pool.exec, warm.clone()).await;
    assert!(claimed(&warm), "the fold ran in a warm container");
    assert_eq!(warm_ran.result.outcome, Outcome::ExitCode { code: 3 });
    assert_eq!(warm_ran.result.outcome, cold_ran.result.outcome);
    assert_eq!(warm_ran.result.outputs, cold_ran.result.outputs);
    assert_eq!(warm_ran.result.outputs, ["copy.txt", "sub/more.txt"]);
    for out in ["copy.txt", "sub/more.txt"] {
        assert_eq!(
            std::fs::read(warm.output_dir.join(out)).unwrap(),
            std::fs::read(cold_req.output_dir.join(out)).unwrap()
        );
    }
    assert_eq!(warm_ran.log(), cold_ran.log());
    assert_eq!(
        warm_ran.log(),
        "input: hello input\n1000\ntmp-ok\nroot-ro\n"
    );
    assert!(warm_ran.result.image_id.is_some());
    // The go carried the fold's environment as a cold container has it.
    let go: serde_json::Value =
        serde_json::from_slice(&std::fs::read(warm.work_dir.join("warm/go.json")).unwrap())
            .unwrap();
    assert_eq!(go["env"]["FOO"], "bar baz");
    assert_eq!(go["env"]["DATARUN_ATTEMPT"], warm.attempt.to_string());
    assert_eq!(go["env"]["OMP_NUM_THREADS"], "1");
    assert_eq!(go["args"], serde_json::json!([]));
    assert_gone_in(&pool.exec, warm.attempt).await;
    eprintln!(
        "cold fold {:?}, warm fold {:?}",
        cold_ran.took, warm_ran.took
    );
}

#[tokio::test]
async fn a_warm_fold_is_held_to_its_own_memory_grant() {
    // Waiting, the container may hold 128 MiB; the fold is granted 64 MiB.
    let pool = pool(1).await;
    let (_dir, mut req) =
        warm_request(r#"x=$(head -c 300000000 /dev/zero | tr "\0" a); echo ${#x}"#);
    req.memory_limit = Some(64 * MIB);
    let ran = run(&pool.exec, req.clone()).await;
    assert!(claimed(&req));
    assert_eq!(
        ran.result.outcome,
        Outcome::OutOfMemory,
        "log: {}",
        ran.log()
    );
    assert!(
        ran.result.metrics.peak_memory <= 64 * MIB,
        "{:?}",
        ran.result.metrics
    );
    // And a grant above the waiting cap is the fold's too.
    await_ready(&pool.exec, 1).await;
    let (_dir, mut req) =
        warm_request(r#"x=$(head -c 150000000 /dev/zero | tr "\0" a); echo ${#x}"#);
    req.memory_limit = Some(512 * MIB);
    let ran = run(&pool.exec, req.clone()).await;
    assert!(claimed(&req));
    assert_eq!(ran.result.outcome, Outcome::Success, "log: {}", ran.log());
    assert!(ran.result.metrics.peak_memory > 128 * MIB);
}

#[tokio::test]
async fn time_limits_and_wall_time_count_from_the_go() {
    let pool = pool(2).await;
    // Both containers waited 3 s before their folds came.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_dir, mut req) = warm_request("sleep 1; echo slept");
    req.hard_limit = Some(Duration::from_secs(2));
    let ran = run(&pool.exec, req.clone()).await;
    assert!(claimed(&req));
    assert_eq!(ran.result.outcome, Outcome::Success, "log: {}", ran.log());
    let wall = ran.result.metrics.wall_ms;
    assert!((1000..2000).contains(&wall), "wall {wall} ms, from the go");
    let (_dir, mut req) = warm_request("sleep 30");
    req.hard_limit = Some(Duration::from_secs(2));
    let ran = run(&pool.exec, req.clone()).await;
    assert!(claimed(&req));
    assert_eq!(ran.result.outcome, Outcome::TimedOutHard);
    assert!(
        ran.took >= Duration::from_millis(1900) && ran.took < Duration::from_secs(8),
        "{:?}",
        ran.took
    );
}

#[tokio::test]
async fn a_warm_container_serves_one_fold_and_is_replaced() {
    let pool = pool(1).await;
    let mut hosts = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..3 {
        await_ready(&pool.exec, 1).await;
        names.extend(pool.exec.list_warm(None).await.unwrap());
        let (_dir, req) =
            warm_request("hostname > output/host; ls /datarun/output; ls /datarun/input");
        let ran = run(&pool.exec, req.clone()).await;
        assert!(claimed(&req));
        assert_eq!(ran.result.outcome, Outcome::Success, "log: {}", ran.log());
        // It sees its own inputs and an output directory that was empty.
        assert_eq!(ran.log(), "host\nbody.sh\ndata.txt\n");
        hosts.insert(std::fs::read_to_string(req.output_dir.join("host")).unwrap());
        assert_gone_in(&pool.exec, req.attempt).await;
    }
    assert_eq!(hosts.len(), 3, "three folds, three containers: {hosts:?}");
    assert_eq!(names.len(), 3, "each replaced by a new one: {names:?}");
    await_ready(&pool.exec, 1).await;
    assert_eq!(pool.exec.list_warm(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn folds_that_do_not_fit_run_cold() {
    let pool = pool(1).await;
    let (_dir, mut other) = warm_request("echo cold");
    other.command = vec!["sh".into(), "input/body.sh".into()];
    let (_dir2, mut python) = warm_request("echo cold");
    python.env.insert("PYTHONHASHSEED".into(), "1".into());
    let (_dir3, mut no_quota) = warm_request("echo cold");
    no_quota.millicpus = 0;
    for req in [other, python, no_quota] {
        let ran = run(&pool.exec, req.clone()).await;
        assert!(!claimed(&req), "{:?}", req.command);
        assert_eq!(ran.result.outcome, Outcome::Success, "log: {}", ran.log());
        assert_eq!(ran.log(), "cold\n");
    }
    assert_eq!(pool.exec.list_warm(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_new_agent_removes_the_idle_containers_of_the_one_before() {
    let ns = namespace();
    let first = pool_in(&ns, 2).await;
    let theirs = first.exec.list_warm(None).await.unwrap();
    assert_eq!(theirs.len(), 2);
    // The first agent dies: its refilling stops, its containers stay.
    if let Some(p) = &first.exec.warm {
        p.abandon();
    }
    let second = pool_in(&ns, 1).await;
    let now = second.exec.list_warm(None).await.unwrap();
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(
        theirs.iter().all(|t| !now.contains(t)),
        "{theirs:?} {now:?}"
    );
    second.exec.retire_warm().await;
    assert!(second.exec.list_warm(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_claimed_warm_container_is_adopted_after_its_agent_died() {
    let pool = pool(1).await;
    let (_dir, req) =
        warm_request(r#"sleep 2; echo done > "$DATARUN_OUTPUT/r.txt"; echo finished"#);
    let attempt = req.attempt;
    let go = req.work_dir.join("warm/go.json");
    let task = {
        let (exec, req) = (pool.exec.clone(), req.clone());
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::unbounded_channel();
            let (_keep, cancel) = watch::channel(false);
            exec.run(req, tx, cancel).await
        })
    };
    let t0 = std::time::Instant::now();
    while !go.exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never told to go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    assert!(pool
        .exec
        .list_attempt_containers()
        .await
        .unwrap()
        .contains(&(attempt, true)));
    // A new agent: no pool of its own, the same namespace.
    let later = executor_with(pool.exec.opts.clone()).await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let (_keep, cancel) = watch::channel(false);
    let result = tokio::time::timeout(TEST_TIMEOUT, later.adopt(req, tx, cancel))
        .await
        .unwrap();
    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(result.outputs, ["r.txt"]);
    assert!(String::from_utf8_lossy(&result.log).ends_with("finished\n"));
    assert!(
        (1900..5000).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
    assert_gone_in(&later, attempt).await;
}

#[tokio::test]
async fn a_command_that_never_says_it_waits_is_never_given_a_fold() {
    // A command without a warm mode: it runs on, but never writes the ready file.
    let ns = namespace();
    let exec = executor_with(DockerOptions {
        namespace: ns,
        ..DockerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let no_warm_mode = vec!["sh".into(), "-c".into(), "sleep 60".into()];
    let exec = exec
        .with_warm(
            WarmSpec {
                command: no_warm_mode.clone(),
                ..spec(1)
            },
            dir.path().join("warm"),
        )
        .await;
    let pool = Pool { exec, _dir: dir };
    let t0 = std::time::Instant::now();
    while pool.exec.list_warm(None).await.unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no warm container");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_d, mut req) = warm_request("echo never");
    req.command = no_warm_mode;
    req.hard_limit = Some(Duration::from_secs(2));
    let ran = run(&pool.exec, req.clone()).await;
    assert!(!claimed(&req));
    assert_eq!(ran.result.outcome, Outcome::TimedOutHard);
    assert_eq!(pool.exec.list_warm(None).await.unwrap().len(), 1);
}
