//! What a fold used: peak memory, CPU time and progress, from the cgroup files or else from the
//! engine's stats.

use super::*;

#[tokio::test]
async fn peak_memory_of_a_200_mb_fold() {
    let exec = executor().await;
    let (_dir, mut req) = request("head -c 200000000 /dev/zero | tail -c 200000000 | wc -c");
    req.memory_limit = Some(1024 * MIB);
    let ran = run(&exec, req).await;
    assert_eq!(ran.result.outcome, Outcome::Success, "{}", ran.log());
    let peak = ran.result.metrics.peak_memory;
    eprintln!(
        "peak of a 200 MB fold: {peak} bytes ({:?})",
        ran.result.metrics
    );
    assert!(
        (170_000_000..=230_000_000).contains(&peak),
        "peak {peak} is not within 15% of 200 MB"
    );
}

#[tokio::test]
async fn cpu_time_of_a_two_second_busy_loop() {
    let exec = executor().await;
    // Burns 2 s of CPU by the container's own cgroup counter, however busy the machine is.
    let (_dir, req) =
        request("while [ $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage) -lt 2000000000 ]; do :; done");
    let ran = run(&exec, req).await;
    assert_eq!(ran.result.outcome, Outcome::Success, "{}", ran.log());
    let Metrics {
        cpu_ms, wall_ms, ..
    } = ran.result.metrics;
    eprintln!("2 s busy loop: cpu {cpu_ms} ms, wall {wall_ms} ms");
    assert!((1400..=2600).contains(&cpu_ms), "cpu {cpu_ms} ms");
    assert!(
        cpu_ms <= wall_ms + 200,
        "cpu {cpu_ms} ms, wall {wall_ms} ms (1 cpu granted)"
    );
    assert!(
        !ran.progress.is_empty(),
        "progress is reported while it runs"
    );
    let last = ran.progress.last().unwrap();
    assert!(last.cpu_ms > 0 && last.memory > 0, "{last:?}");
}

#[tokio::test]
async fn without_cgroup_files_the_engine_stats_are_used() {
    let mut exec = executor().await;
    exec.read_cgroups = false;
    // `tail` holds 100 MB while the loop burns CPU for 3 s, so the once-a-second stats see both.
    // The loop then exits without reading what `tail` holds (which ends `tail` on a broken pipe):
    // draining 100 MB through the pipe after the loop would add CPU the loop did not count.
    let (_dir, mut req) = request(
        "head -c 100000000 /dev/zero | tail -c 100000000 | (while [ $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage) -lt 3000000000 ]; do :; done; exit 0)",
    );
    req.memory_limit = Some(1024 * MIB);
    let ran = run(&exec, req).await;
    assert_eq!(ran.result.outcome, Outcome::Success, "{}", ran.log());
    let Metrics {
        cpu_ms,
        peak_memory,
        ..
    } = ran.result.metrics;
    eprintln!("engine stats only: {:?}", ran.result.metrics);
    // The loop stops once the cgroup counted 3 s; the shell overshoots a little on a busy machine.
    assert!((1500..=3600).contains(&cpu_ms), "cpu {cpu_ms} ms");
    assert!(
        (90_000_000..=130_000_000).contains(&peak_memory),
        "peak {peak_memory}"
    );
}
