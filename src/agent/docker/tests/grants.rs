//! The grants a fold cannot exceed: memory, the soft and hard time limits, the pids limit.

use super::*;

#[tokio::test]
async fn going_over_the_memory_grant_is_out_of_memory() {
    let exec = executor().await;
    let (_dir, mut req) = request(r#"x=$(head -c 300000000 /dev/zero | tr "\0" a); echo ${#x}"#);
    req.memory_limit = Some(64 * MIB);
    let ran = run(&exec, req).await;
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
}

#[tokio::test]
async fn the_soft_limit_terminates() {
    let exec = executor().await;
    let (_dir, mut req) = request("sleep 30");
    req.soft_limit = Some(Duration::from_secs(1));
    let ran = run(&exec, req).await;
    assert_eq!(ran.result.outcome, Outcome::TimedOutSoft);
    assert!(ran.took < Duration::from_secs(8), "took {:?}", ran.took);
    let wall = ran.result.metrics.wall_ms;
    assert!((900..4000).contains(&wall), "wall {wall} ms");
}

#[tokio::test]
async fn ignoring_sigterm_meets_the_hard_limit() {
    let exec = executor().await;
    let (_dir, mut req) = request(r#"trap "" TERM; echo trapped; while :; do sleep 1; done"#);
    req.soft_limit = Some(Duration::from_secs(1));
    req.hard_limit = Some(Duration::from_secs(3));
    let ran = run(&exec, req).await;
    assert_eq!(
        ran.result.outcome,
        Outcome::TimedOutHard,
        "log: {}",
        ran.log()
    );
    let wall = ran.result.metrics.wall_ms;
    assert!((2900..6000).contains(&wall), "wall {wall} ms");
    assert!(ran.log().contains("trapped"));
}

#[tokio::test]
async fn a_fork_bomb_meets_the_pids_limit_and_the_host_stays_healthy() {
    let exec = executor_with(DockerOptions {
        pids_limit: 64,
        ..DockerOptions::default()
    })
    .await;
    let (_dir, mut req) = request(
        r#"i=0; while [ $i -lt 1000 ]; do sleep 100 & i=$((i+1)); done; echo spawned $i; wait"#,
    );
    req.hard_limit = Some(Duration::from_secs(6));
    let ran = run(&exec, req).await;
    let log = ran.log();
    assert!(
        log.contains("can't fork"),
        "the fold saw no fork failure: {log}"
    );
    assert!(
        matches!(
            ran.result.outcome,
            Outcome::TimedOutHard | Outcome::ExitCode { .. }
        ),
        "{:?}",
        ran.result.outcome
    );
    assert!(ran.took < Duration::from_secs(20), "took {:?}", ran.took);
    exec.engine_version()
        .await
        .expect("the engine still answers");
    let host = std::process::Command::new("true").status().unwrap();
    assert!(host.success(), "the host can still start processes");
}
