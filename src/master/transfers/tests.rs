//! The transfer of a finished attempt's files, against a real agent journal and store.

use super::*;
use crate::agent::journal::Journal;
use crate::model::Metrics;
use crate::protocol::{FromAgent, OutputFile};
use tokio::sync::mpsc::UnboundedReceiver;

const ATTEMPT: AttemptId = 7;

/// An agent's journal holding a finished attempt with one output, and its report.
fn finished(root: &std::path::Path, data: &[u8]) -> (Journal, AttemptReport) {
    let journal = Journal::open(root).unwrap();
    let run = crate::agent::journal::test_run(ATTEMPT);
    let dir = journal.begin(&run).unwrap();
    std::fs::write(dir.join("output/big"), data).unwrap();
    let report = AttemptReport {
        attempt: ATTEMPT,
        outcome: Outcome::Success,
        metrics: Metrics::default(),
        log: LogData::Inline(protocol::b64(b"the log")),
        outputs: vec![OutputFile {
            name: "big".into(),
            size: data.len() as u64,
            sha256: crate::store::sha256_hex(data),
        }],
        ran: None,
    };
    journal.finish(&report).unwrap();
    (journal, report)
}

/// Answers one message of the master as the agent does, handing the answer to the loop.
fn answer(transfers: &Transfers, journal: &Journal, msg: ToAgent) {
    let ToAgent::Fetch {
        attempt,
        file,
        offset,
        len,
    } = msg
    else {
        panic!("only fetches are sent: {msg:?}")
    };
    let piece = match journal.fetch(attempt, file, offset, len) {
        FromAgent::Chunk {
            file,
            offset,
            data,
            eof,
            ..
        } => Piece::Chunk {
            file,
            offset,
            data,
            eof,
        },
        FromAgent::FetchFailed { file, message, .. } => Piece::Failed { file, message },
        other => panic!("{other:?}"),
    };
    transfers.route("r", attempt, piece);
}

/// Serves the transfer until it is done.
async fn serve(
    transfers: &mut Transfers,
    journal: &Journal,
    agent: &mut UnboundedReceiver<ToAgent>,
) -> Done {
    loop {
        tokio::select! {
            Some(msg) = agent.recv() => answer(transfers, journal, msg),
            Some(done) = transfers.done_rx.recv() => return done,
        }
    }
}

fn start(
    transfers: &mut Transfers,
    generation: u64,
    report: &AttemptReport,
) -> (UnboundedSender<ToAgent>, UnboundedReceiver<ToAgent>) {
    let (link, agent) = mpsc::unbounded_channel();
    let plan = plan(report, u64::MAX).unwrap();
    transfers.start("r", generation, link.downgrade(), report.clone(), plan);
    (link, agent)
}

#[tokio::test]
async fn a_transfer_cut_with_its_link_starts_over_on_the_next_hello_and_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("t.db")).unwrap();
    let data: Vec<u8> = (0..(5 << 19) + 77).map(|i| (i % 253) as u8).collect();
    let (journal, report) = finished(&tmp.path().join("agent"), &data);
    let mut transfers = Transfers::new(store.clone());

    // The first link carries one chunk, then dies.
    let (link, mut agent) = start(&mut transfers, 1, &report);
    let first = agent.recv().await.unwrap();
    answer(&transfers, &journal, first);
    drop(link);
    // The agent's next hello reports the attempt again: the transfer starts over.
    let (_link, mut agent) = start(&mut transfers, 2, &report);
    let done = serve(&mut transfers, &journal, &mut agent).await;
    assert_eq!((done.attempt, done.generation), (ATTEMPT, 2));
    transfers.finished(done.attempt, done.generation);
    let input = done.input.expect("a result");
    assert_eq!(input.outcome, Outcome::Success);
    assert_eq!(input.log, BlobData::Bytes(b"the log".to_vec()));
    let [(name, BlobData::Staged(staged))] = &input.outputs[..] else {
        panic!("{:?}", input.outputs)
    };
    assert_eq!(name, "big");
    assert_eq!(std::fs::read(&staged.path).unwrap(), data);
    // Only that file is left in the staging area: the first transfer's temp file is gone.
    let tmp_dir = tmp.path().join("blobs/tmp");
    assert_eq!(std::fs::read_dir(&tmp_dir).unwrap().count(), 1);
    // The store takes it in with the result.
    assert_eq!(
        store.put_staged(staged.clone()).await.unwrap(),
        (crate::store::sha256_hex(&data), data.len() as u64)
    );
    assert_eq!(std::fs::read_dir(&tmp_dir).unwrap().count(), 0);
}

#[tokio::test]
async fn files_that_do_not_match_their_report_end_the_attempt_as_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("t.db")).unwrap();
    let data = vec![5u8; 3 << 19];
    let (journal, report) = finished(&tmp.path().join("agent"), &data);
    let mut transfers = Transfers::new(store);
    let mut wrong_hash = report.clone();
    wrong_hash.outputs[0].sha256 = crate::store::sha256_hex(b"other");
    let mut truncated = report.clone();
    truncated.outputs[0].size += 1;
    let mut missing = report.clone();
    missing.outputs[0].name = "gone".into();
    for (bad, why) in [
        (wrong_hash, "does not match its sha256"),
        (truncated, "shorter than announced"),
        (missing, "the agent cannot send output/gone"),
    ] {
        let (_link, mut agent) = start(&mut transfers, 1, &bad);
        let done = serve(&mut transfers, &journal, &mut agent).await;
        transfers.finished(done.attempt, done.generation);
        let input = done.input.expect("a result");
        let Outcome::Error { message } = &input.outcome else {
            panic!("{:?}", input.outcome)
        };
        assert!(
            message.starts_with("the master could not record this result: ")
                && message.contains(why),
            "{message}"
        );
        assert!(input.outputs.is_empty());
        assert_eq!(
            input.log,
            BlobData::Bytes(b"the log".to_vec()),
            "the log is kept"
        );
    }
    let tmp_dir = tmp.path().join("blobs/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp_dir).unwrap().count(),
        0,
        "no temp file left"
    );
}

#[test]
fn reports_are_checked_before_anything_is_pulled() {
    let output = |name: &str, size: u64| OutputFile {
        name: name.into(),
        size,
        sha256: "ab".repeat(32),
    };
    let report = |outputs: Vec<OutputFile>, log: LogData| AttemptReport {
        attempt: 1,
        outcome: Outcome::Success,
        metrics: Metrics::default(),
        log,
        outputs,
        ran: None,
    };
    let fine = report(vec![output("a", 10)], LogData::default());
    assert_eq!(plan(&fine, 100).unwrap().files.len(), 1);
    let log_file = LogData::File {
        size: 70_000,
        sha256: "cd".repeat(32),
    };
    let planned = plan(&report(vec![], log_file), 100).unwrap();
    assert_eq!(planned.files[0].file, LOG_FILE);
    for (bad, why) in [
        (
            report(vec![output("../x", 1)], LogData::default()),
            "rejected",
        ),
        (
            report(vec![output("a", 1), output("a", 1)], LogData::default()),
            "twice",
        ),
        (
            report(vec![output("a", 101)], LogData::default()),
            "over the limit of 100",
        ),
        (
            report(
                vec![OutputFile {
                    sha256: "x".into(),
                    ..output("a", 1)
                }],
                LogData::default(),
            ),
            "not a sha256",
        ),
        (
            report(
                (0..=MAX_FILES)
                    .map(|i| output(&format!("f{i}"), 0))
                    .collect(),
                LogData::default(),
            ),
            "more than the 1000 allowed",
        ),
        (report(vec![], LogData::Inline("%%%".into())), "its log"),
        (
            report(
                vec![],
                LogData::File {
                    size: MAX_LOG * 2,
                    sha256: "cd".repeat(32),
                },
            ),
            "log file",
        ),
    ] {
        let err = plan(&bad, 100).err().expect(why);
        assert!(err.contains(why), "{err}");
    }
}

/// A live log ask goes out with its seq; only the answer of that runner and attempt reaches
/// the asker, decoded; an answer over the chunk limit or "not live" is None; askers that gave
/// up leave room, and past the cap an ask is answered None at once.
#[tokio::test]
async fn live_log_asks_are_matched_to_their_answers() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let link = crate::transport::Link { generation: 1, tx };
    let mut asks = LogAsks::default();
    let chunk = |attempt: AttemptId, seq: u64, data: &[u8], live: bool| FromAgent::LogChunk {
        attempt,
        seq,
        offset: 5,
        data: protocol::b64(data),
        size: 5 + data.len() as u64,
        eof: false,
        live,
    };
    let (reply, mut got) = tokio::sync::oneshot::channel();
    asks.ask(Some(&link), "r1", 3, 5, reply);
    let Some(ToAgent::FetchLog {
        attempt: 3,
        seq,
        offset: 5,
        max,
    }) = rx.recv().await
    else {
        panic!("a FetchLog goes out")
    };
    assert_eq!(max, protocol::MAX_LOG_CHUNK);
    asks.answer("r2", chunk(3, seq, b"x", true));
    asks.answer("r1", chunk(4, seq, b"x", true));
    asks.answer("r1", chunk(3, seq + 1, b"x", true));
    assert!(got.try_recv().is_err(), "answers of others are dropped");
    asks.answer("r1", chunk(3, seq, b"hello", true));
    let live = got.await.unwrap().unwrap();
    assert_eq!(
        (live.offset, &live.data[..], live.size),
        (5, &b"hello"[..], 10)
    );

    let big = vec![b'x'; protocol::MAX_LOG_CHUNK as usize + 1];
    for (data, live) in [(&big[..], true), (&b"x"[..], false)] {
        let (reply, got) = tokio::sync::oneshot::channel();
        asks.ask(Some(&link), "r1", 3, 0, reply);
        let Some(ToAgent::FetchLog { seq, .. }) = rx.recv().await else {
            panic!("a FetchLog goes out")
        };
        asks.answer("r1", chunk(3, seq, data, live));
        assert_eq!(got.await.unwrap(), None);
    }

    let (reply, got) = tokio::sync::oneshot::channel();
    asks.ask(None, "r1", 3, 0, reply);
    assert_eq!(got.await.unwrap(), None, "no link, no live log");
    let mut waiting = Vec::new();
    for _ in 0..MAX_LOG_ASKS {
        let (reply, got) = tokio::sync::oneshot::channel();
        asks.ask(Some(&link), "r1", 3, 0, reply);
        waiting.push(got);
    }
    let (reply, got) = tokio::sync::oneshot::channel();
    asks.ask(Some(&link), "r1", 3, 0, reply);
    assert_eq!(got.await.unwrap(), None, "over the cap");
    drop(waiting);
    let (reply, mut got) = tokio::sync::oneshot::channel();
    asks.ask(Some(&link), "r1", 3, 0, reply);
    assert!(got.try_recv().is_err(), "askers that gave up left room");
}
