//! A master cut off from the database in the middle of a write transaction: the database
//! ends that transaction once it has waited for its next statement longer than the lease
//! (`lease::fence`), so its locks do not keep the standby's takeover waiting, and nothing of
//! it is stored.

use super::{common, spec};
use datarun::store::pg::PgStore;
use datarun::store::QueueStore;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_stalled_write_does_not_block_the_takeover() {
    let url = common::pg::database();
    let port = common::pg::cluster().port;
    let relay = common::pg::Relay::start(port).await;
    let via_relay = url.replace(&format!(":{port}/"), &format!(":{}/", relay.port));
    let lease = Duration::from_millis(1000);
    let a = PgStore::connect(&via_relay).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    a.try_acquire("master-a", lease)
        .await
        .unwrap()
        .expect("A leads");
    // A long write (a statement per fold), cut off while it runs.
    let folds: Vec<_> = (0..20_000)
        .map(|_| (spec(r#"{"command":["true"]}"#), None))
        .collect();
    let write = tokio::spawn({
        let a = a.clone();
        async move { a.submit("ann".into(), false, folds).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the write ended before the cut");
    relay.pause(true);
    let cut = Instant::now();
    let taken = loop {
        // A takeover waits for the writes in flight (FOR UPDATE), at most about a lease each.
        if let Ok(Some(_)) = b.try_acquire("master-b", lease).await {
            break cut.elapsed();
        }
        assert!(cut.elapsed() < Duration::from_secs(8), "B never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(taken < lease * 3, "took over {taken:?} after the cut");
    let (pending, _) = b.pending_folds().await.unwrap();
    assert!(
        pending.is_empty(),
        "{} folds of the cut write stored",
        pending.len()
    );
    relay.pause(false);
    let refused = tokio::time::timeout(Duration::from_secs(10), write).await;
    assert!(
        matches!(refused, Ok(Ok(Err(_)))),
        "the stalled write was not refused: {refused:?}"
    );
    eprintln!("takeover {taken:?} after a cut in the middle of a write (lease {lease:?})");
}
