//! The writer's lanes and the chunked recording of results, on a real SQLite file.

use super::tests::{assign, new_attempt, result, spec};
use super::writer::Urgency;
use super::*;
use crate::model::{FoldSpec, FoldState, Outcome};
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
    // `w1` finds jobs waiting when the writer takes it in: it goes with the urgent ones.
    for (name, urgency) in [
        ("n1", Urgency::InTurn),
        ("n2", Urgency::InTurn),
        ("u1", Urgency::First),
        ("w1", Urgency::FirstIfJobsWait),
        ("n3", Urgency::InTurn),
        ("u2", Urgency::First),
    ] {
        let order = order.clone();
        let rx = store
            .queue_with(Durability::Durable, urgency, move |_| {
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
    assert_eq!(*order.lock().unwrap(), ["u1", "w1", "u2", "n1", "n2", "n3"]);
}

#[tokio::test]
async fn the_masters_jobs_and_everyone_elses_take_turns_each_in_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let master = store.for_master();
    let order = Arc::new(Mutex::new(Vec::new()));
    let release = hold_writer(&store);
    let mut answers = Vec::new();
    // A flush of result chunks queued at once, then two submits and a loss of the master's.
    for (name, by_master) in [
        ("chunk1", true),
        ("chunk2", true),
        ("chunk3", true),
        ("submit1", false),
        ("submit2", false),
        ("lost", true),
    ] {
        let order = order.clone();
        let on = if by_master { &master } else { &store };
        answers.push(
            on.queue(move |_| {
                order.lock().unwrap().push(name);
                Ok(())
            })
            .unwrap(),
        );
    }
    release.send(()).unwrap();
    for rx in answers {
        rx.await.unwrap().unwrap();
    }
    // Each submit waited for one chunk, not for the flush; the loss stayed behind the chunks.
    assert_eq!(
        *order.lock().unwrap(),
        ["chunk1", "submit1", "chunk2", "submit2", "chunk3", "lost"]
    );
}

/// On a new store, queues a first job (with `urgency`), then ten slow jobs behind it, all while
/// the writer is held; returns how many slow jobs had started when the first was answered (the
/// writer answers a group's callers before it starts the next group's jobs, so this count is
/// exact).
fn slow_jobs_started_before_the_answer(urgency: Urgency) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let store = &Store::open(&dir.path().join("t.db")).unwrap();
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let before = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let release = hold_writer(store);
    let flag = answered.clone();
    store
        .enqueue(
            Durability::Durable,
            urgency,
            |c| Ok(c.execute("UPDATE sync_marker SET n = n + 1", [])?),
            move |out: Result<usize>| {
                out.unwrap();
                flag.store(true, Ordering::SeqCst);
            },
        )
        .unwrap();
    let (all_done, wait_all) = std::sync::mpsc::channel();
    for _ in 0..10 {
        let (answered, before, done, all_done) = (
            answered.clone(),
            before.clone(),
            done.clone(),
            all_done.clone(),
        );
        drop(store.queue(move |_| {
            if !answered.load(Ordering::SeqCst) {
                before.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(GROUP_TIME + std::time::Duration::from_millis(10));
            if done.fetch_add(1, Ordering::SeqCst) == 9 {
                let _ = all_done.send(());
            }
            Ok(())
        }));
    }
    release.send(()).unwrap();
    wait_all
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the slow jobs ran");
    assert!(answered.load(Ordering::SeqCst));
    before.load(Ordering::SeqCst)
}

#[test]
fn a_group_ends_once_it_has_run_for_its_time_and_answers_its_callers() {
    // A flush's result chunks behind a submit: it waits for the first one, not for all ten.
    let when = slow_jobs_started_before_the_answer(Urgency::InTurn);
    assert_eq!(
        when, 1,
        "the first job answered after {when} of 10 slow jobs"
    );
}

#[test]
fn an_urgent_jobs_answer_does_not_wait_for_the_rest_of_its_group() {
    // Its group ends with it: it waits for its fsync, not for a slow job.
    let when = slow_jobs_started_before_the_answer(Urgency::First);
    assert_eq!(
        when, 0,
        "the urgent job answered after {when} of 10 slow jobs"
    );
}

#[test]
fn a_job_urgent_only_if_jobs_wait_shares_its_group_when_none_does() {
    // Nothing waited when the writer took it in: the slow jobs queued after it join its group
    // (as they would an ordinary job's), where an urgent job's group ends with it.
    let when = slow_jobs_started_before_the_answer(Urgency::FirstIfJobsWait);
    assert_eq!(when, 1, "it answered after {when} of 10 slow jobs");
}

/// `n` folds of ann's, each assigned: the folds and their attempts.
async fn submitted_and_assigned(
    store: &Store,
    n: usize,
) -> (Vec<crate::model::FoldId>, Vec<crate::model::AttemptId>) {
    let folds = store
        .submit("ann".into(), false, vec![(spec(0), None); n])
        .await
        .unwrap();
    let mut attempts = Vec::new();
    for f in &folds {
        attempts.push(assign(store, *f).await);
    }
    (folds, attempts)
}

/// Each chunk's (starts, results).
fn shapes(chunks: &[crate::store::ReportChunk]) -> Vec<(usize, usize)> {
    chunks
        .iter()
        .map(|c| (c.started.len(), c.results))
        .collect()
}

async fn states_of(store: &Store, folds: &[crate::model::FoldId]) -> Vec<FoldState> {
    let mut states = Vec::new();
    for f in folds {
        states.push(store.fold(*f).await.unwrap().state);
    }
    states
}

#[tokio::test]
async fn results_recorded_in_chunks_answer_per_chunk_and_a_failed_chunk_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let (folds, attempts) = submitted_and_assigned(&store, 5).await;
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
        .await;
    // The starts' own chunk first, then the results' chunks.
    assert_eq!(shapes(&chunks), [(5, 0), (0, 2), (0, 2), (0, 1)]);
    assert_eq!(chunks[0].started, attempts);
    assert!(
        chunks[0].answer.is_ok() && chunks[1].answer.is_ok() && chunks[3].answer.is_ok(),
        "{:?}",
        chunks
    );
    assert!(
        matches!(&chunks[2].answer, Err(StoreError::Io(m)) if m.contains("cannot")),
        "{:?}",
        chunks[2].answer
    );
    let states = states_of(&store, &folds).await;
    // The starts went before the results, so the failed chunk's folds still run.
    use FoldState::*;
    assert_eq!(states, [Done, Done, Running, Running, Done]);
}

#[tokio::test]
async fn many_starts_are_recorded_in_chunks_of_their_own_before_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let (folds, attempts) = submitted_and_assigned(&store, 20).await;
    // The last attempt starts and ends in the same flush.
    let last = *attempts.last().unwrap();
    let chunks = store
        .apply_reports_chunked(
            attempts.clone(),
            vec![result(last, Outcome::Success)],
            Vec::new(),
            2,
        )
        .await;
    // 20 starts in chunks of 2 x STARTS_PER_CHUNK = 8, then the one result.
    assert_eq!(shapes(&chunks), [(8, 0), (8, 0), (4, 0), (0, 1)]);
    // Each start in exactly one chunk, in order.
    let all: Vec<_> = chunks.iter().flat_map(|c| c.started.clone()).collect();
    assert_eq!(all, attempts);
    assert!(chunks.iter().all(|c| c.answer.is_ok()), "{chunks:?}");
    let states = states_of(&store, &folds).await;
    let mut expected = vec![FoldState::Running; 19];
    expected.push(FoldState::Done);
    assert_eq!(states, expected);
}

/// The API's lookups and listings run on reader connections: none waits behind a write that
/// holds the writer (a stream of submits and results, each group ending in an fsync), and
/// each still answers for the caller's own folds only.
#[tokio::test]
async fn lookups_and_listings_answer_while_the_writer_is_held() {
    use crate::store::records::FoldFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let ids = store
        .submit("ann".into(), false, vec![(spec(0), None), (spec(0), None)])
        .await
        .unwrap();
    let release = hold_writer(&store);
    let soon = std::time::Duration::from_secs(5);
    let ann = Scope::Owner("ann".into());
    let bob = Scope::Owner("bob".into());
    let seen = tokio::time::timeout(soon, store.visible(&ann, Resource::Fold(ids[0])))
        .await
        .expect("a fold's owner check does not wait for the writer");
    assert!(seen.is_ok(), "{seen:?}");
    let hidden = tokio::time::timeout(soon, store.visible(&bob, Resource::Fold(ids[0])))
        .await
        .expect("another owner's check does not wait for the writer");
    assert!(
        matches!(hidden, Err(StoreError::NotFound(_))),
        "another owner's fold answers as a missing one: {hidden:?}"
    );
    let fold = tokio::time::timeout(soon, store.fold(ids[1]))
        .await
        .expect("a fold lookup does not wait for the writer")
        .unwrap();
    assert_eq!(fold.id, ids[1]);
    let page = tokio::time::timeout(soon, store.list_folds(FoldFilter::default()))
        .await
        .expect("a listing does not wait for the writer")
        .unwrap();
    assert_eq!(page.folds.iter().map(|f| f.id).collect::<Vec<_>>(), ids);
    let missing = tokio::time::timeout(soon, store.submission(1))
        .await
        .expect("a submission lookup does not wait for the writer");
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    let held = store.queue(|_| Ok(())).unwrap();
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
}

/// The WAL is copied into the database file by the checkpointer thread while the store is
/// open (the writer's commits no longer do it): the file grows with what was written, and the
/// store's data is all there.
#[tokio::test]
async fn the_checkpointer_copies_the_wal_into_the_database_while_the_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Store::open(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let ids = store
        .submit("ann".into(), false, vec![(spec(0), None); 2_000])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let grown = loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now > before + 100_000 || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        grown > before + 100_000,
        "the database file stayed at {grown} bytes (was {before}) with 2,000 folds in the WAL"
    );
    let last = store.fold(*ids.last().unwrap()).await.unwrap();
    assert_eq!(last.id, *ids.last().unwrap());
}

/// Two idle folds of ann's on a new store, and a one-fold assignment of each to "local".
async fn two_folds_to_assign() -> (tempfile::TempDir, Store, [Vec<NewAttempt>; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let ids = store
        .submit("ann".into(), false, vec![(spec(0), None); 2])
        .await
        .unwrap();
    let new = |fold| vec![new_attempt(fold)];
    (dir, store, [new(ids[0]), new(ids[1])])
}

/// Starts the master's `assign` (behind running work or not) on its own task and gives it
/// time to queue.
async fn assigning(
    store: &Store,
    new: Vec<NewAttempt>,
    behind: bool,
) -> tokio::task::JoinHandle<Result<Vec<(crate::model::AttemptId, NewAttempt, FoldSpec)>>> {
    let store = store.for_master();
    let task = tokio::spawn(async move {
        if behind {
            store.assign_behind(new).await
        } else {
            store.assign(new).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    task
}

#[tokio::test]
async fn an_assignment_behind_running_work_is_not_urgent_while_nothing_waits() {
    let (_dir, store, [first, second]) = two_folds_to_assign().await;
    let release = hold_writer(&store);
    // The writer runs a job and has nothing waiting: the one behind running work is queued
    // as an ordinary job, so an urgent one queued after it still goes first.
    let behind = assigning(&store, first, true).await;
    let urgent = assigning(&store, second, false).await;
    release.send(()).unwrap();
    let (behind, urgent) = (
        behind.await.unwrap().unwrap(),
        urgent.await.unwrap().unwrap(),
    );
    assert!(
        urgent[0].0 < behind[0].0,
        "the urgent assignment went first"
    );
    // Both are durable assignments of idle folds, with their specs; a fold no longer idle is
    // skipped, as by `assign`.
    for out in [&behind, &urgent] {
        assert_eq!(out.len(), 1);
        let fold = store.fold(out[0].1.fold).await.unwrap();
        assert_eq!(fold.state, FoldState::Assigned);
    }
    let again = vec![behind[0].1.clone()];
    assert!(store.assign_behind(again).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_assignment_behind_running_work_goes_before_the_jobs_that_wait() {
    let (_dir, store, [first, _]) = two_folds_to_assign().await;
    let fold = first[0].fold;
    let release = hold_writer(&store);
    // A job of the master's own lane waits (a chunk of results, say): the master must not
    // wait behind it for its next cycle.
    let seen = store
        .for_master()
        .queue(|c| {
            Ok(
                c.query_row("SELECT group_concat(fold_id) FROM attempts", [], |r| {
                    r.get::<_, Option<String>>(0)
                })?,
            )
        })
        .unwrap();
    let behind = assigning(&store, first, true).await;
    release.send(()).unwrap();
    assert_eq!(behind.await.unwrap().unwrap().len(), 1);
    assert_eq!(
        seen.await.unwrap().unwrap(),
        Some(fold.to_string()),
        "the assignment ran before the job that waited"
    );
}
