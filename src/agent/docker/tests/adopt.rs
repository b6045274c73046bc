//! Adoption after an agent restart: a running fold is resumed and collected once, a finished
//! one is collected, time limits count from the original start, a missing container is lost.

use super::*;

async fn adopt(exec: &DockerExecutor, req: ExecRequest) -> ExecResult {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (_keep, cancel) = watch::channel(false);
    tokio::time::timeout(TEST_TIMEOUT, exec.adopt(req, tx, cancel))
        .await
        .expect("the adopted fold did not end in time")
}

#[tokio::test]
async fn adopt_resumes_a_running_fold_and_collects_it_once() {
    let exec = executor().await;
    let (_dir, req) =
        request(r#"echo begun; sleep 3; echo done > "$DATARUN_OUTPUT/r.txt"; echo finished"#);
    let attempt = req.attempt;
    let t0 = run_and_abandon(&exec, req.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        exec.list_attempt_containers()
            .await
            .unwrap()
            .contains(&(attempt, true)),
        "the container outlives its agent"
    );
    let result = adopt(&exec, req.clone()).await;
    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(result.outputs, ["r.txt"]);
    assert_eq!(String::from_utf8_lossy(&result.log), "begun\nfinished\n");
    assert!(
        (2900..6000).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_gone(&exec, attempt).await;
    // Collected once: the container is gone, a second adopt finds nothing to report twice.
    assert!(matches!(
        adopt(&exec, req).await.outcome,
        Outcome::Lost { .. }
    ));
}

#[tokio::test]
async fn adopt_collects_a_fold_that_ended_while_no_agent_watched() {
    let exec = executor().await;
    let (_dir, req) =
        request(r#"sleep 1; echo done > "$DATARUN_OUTPUT/r.txt"; echo finished; exit 4"#);
    let attempt = req.attempt;
    run_and_abandon(&exec, req.clone()).await;
    await_listed(&exec, attempt, false).await;
    let result = adopt(&exec, req).await;
    assert_eq!(result.outcome, Outcome::ExitCode { code: 4 });
    assert_eq!(result.outputs, ["r.txt"]);
    assert_eq!(String::from_utf8_lossy(&result.log), "finished\n");
    assert_gone(&exec, attempt).await;
}

#[tokio::test]
async fn adopt_counts_the_soft_limit_from_the_original_start() {
    let exec = executor().await;
    let (_dir, mut req) = request("sleep 30");
    req.soft_limit = Some(Duration::from_secs(3));
    let t0 = run_and_abandon(&exec, req.clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = adopt(&exec, req).await;
    assert_eq!(result.outcome, Outcome::TimedOutSoft);
    let since_start = t0.elapsed();
    assert!(since_start < Duration::from_millis(5500), "{since_start:?}");
    assert!(
        (2900..4500).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
}

#[tokio::test]
async fn adopt_counts_the_hard_limit_from_the_original_start() {
    let exec = executor().await;
    let (_dir, mut req) = request(r#"trap "" TERM; while :; do sleep 1; done"#);
    req.soft_limit = Some(Duration::from_secs(2));
    req.hard_limit = Some(Duration::from_secs(4));
    let t0 = run_and_abandon(&exec, req.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = adopt(&exec, req).await;
    assert_eq!(result.outcome, Outcome::TimedOutHard);
    let since_start = t0.elapsed();
    assert!(
        (Duration::from_millis(3900)..Duration::from_millis(6500)).contains(&since_start),
        "{since_start:?}"
    );
    assert!(
        (3900..5500).contains(&result.metrics.wall_ms),
        "{:?}",
        result.metrics
    );
}

#[tokio::test]
async fn adopting_an_attempt_without_a_container_is_lost() {
    let exec = executor().await;
    let (_dir, req) = request("true");
    let result = adopt(&exec, req).await;
    assert!(
        matches!(result.outcome, Outcome::Lost { .. }),
        "{:?}",
        result.outcome
    );
}
