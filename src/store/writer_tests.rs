//! The writer's lanes and the chunked recording of results, on a real SQLite file.

use super::tests::{assign, result, spec};
use super::*;
use crate::model::{FoldState, Outcome};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

/// Queues a job that holds the writer until `release` is sent (or dropped).
fn hold_writer(store: &Store) -> std::sync::mpsc::Sender<()> {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (running, started) = std::sync::mpsc::channel::<()>();
    drop(store.queue(move |_| {
        running.send(()).unwrap();
        let _ = wait.recv();
        Ok(())
    }));
    started
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the writer takes the job");
    release
}

#[tokio::test]
async fn an_urgent_job_goes_before_the_jobs_waiting_and_each_lane_keeps_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let release = hold_writer(&store);
    let mut answers = Vec::new();
    for (name, urgent) in [
        ("n1", false),
        ("n2", false),
        ("u1", true),
        ("n3", false),
        ("u2", true),
    ] {
        let order = order.clone();
        let rx = store
            .queue_with(Durability::Durable, urgent, move |_| {
                order.lock().unwrap().push(name);
                Ok(())
            })
            .unwrap();
        answers.push(rx);
    }
    release.send(()).unwrap();
    for rx in answers {
        rx.await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["u1", "u2", "n1", "n2", "n3"]);
}

#[tokio::test]
async fn an_urgent_jobs_answer_does_not_wait_for_the_rest_of_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let release = hold_writer(&store);
    let urgent = store
        .queue_with(Durability::Durable, true, |c| {
            Ok(c.execute("UPDATE sync_marker SET n = n + 1", [])?)
        })
        .unwrap();
    // Ten slow jobs wait behind it; before lanes they shared its group (and its answer).
    let mut slow = Vec::new();
    for _ in 0..10 {
        let ran = ran.clone();
        slow.push(
            store
                .queue(move |_| {
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap(),
        );
    }
    release.send(()).unwrap();
    assert_eq!(urgent.await.unwrap().unwrap(), 1);
    let when = ran.load(Ordering::SeqCst);
    assert!(
        when <= 3,
        "the urgent job answered after {when} of 10 slow jobs"
    );
    for rx in slow {
        rx.await.unwrap().unwrap();
    }
    assert_eq!(ran.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn results_recorded_in_chunks_answer_per_chunk_and_a_failed_chunk_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let folds = store
        .submit("ann".into(), false, vec![(spec(0), None); 5])
        .await
        .unwrap();
    let mut attempts = Vec::new();
    for f in &folds {
        attempts.push(assign(&store, *f).await);
    }
    let mut inputs: Vec<ResultInput> = attempts
        .iter()
        .map(|a| result(*a, Outcome::Success))
        .collect();
    // The third result's output must be a file where a file stands in the way of its
    // directory: its chunk (the second) cannot be stored.
    let big = vec![7u8; INLINE_MAX as usize + 1];
    let sha = sha256_hex(&big);
    std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
    std::fs::write(dir.path().join("blobs").join(&sha[..2]), b"in the way").unwrap();
    inputs[2].outputs = vec![("big".into(), big.into())];
    let chunks = store
        .apply_reports_chunked(attempts.clone(), inputs, Vec::new(), 2)
        .await
        .unwrap();
    let sizes: Vec<usize> = chunks.iter().map(|(n, _)| *n).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert!(chunks[0].1.is_ok() && chunks[2].1.is_ok(), "{:?}", chunks);
    assert!(
        matches!(&chunks[1].1, Err(StoreError::Io(m)) if m.contains("cannot")),
        "{:?}",
        chunks[1].1
    );
    let mut states = Vec::new();
    for f in &folds {
        states.push(store.fold(*f).await.unwrap().state);
    }
    // The starts went with the first chunk, so the failed chunk's folds still run.
    use FoldState::*;
    assert_eq!(states, [Done, Done, Running, Running, Done]);
}
