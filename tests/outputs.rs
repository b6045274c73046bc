//! Outputs never endanger the master: the output limit is enforced on the runner while the
//! fold runs, large outputs stream in chunks into the blob store (bounded memory on master and
//! agent), and a journaled result the master cannot accept is recorded as an error instead of
//! crashing it at every start.

mod common;

use common::{sh, Master};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;

fn outcome(f: &Value) -> &Value {
    &f["outcome"]
}

/// The last attempt of a fold (from `GET /folds/{id}`).
fn last_attempt(m: &Master, id: i64) -> Value {
    let shown = m.fold(id);
    shown["attempts"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

#[test]
fn a_fold_writing_1_1_gb_of_outputs_is_killed_on_its_runner_and_the_master_stays_small() {
    let m = Master::start(None);
    let before = m.stored_bytes();
    let started = Instant::now();
    let ids = m.submit(vec![sh("head -c 1100M /dev/zero > $DATARUN_OUTPUT/big")]);
    let folds = m.wait_all(&ids, Duration::from_secs(120));
    let fold = &folds[0];
    assert_eq!(fold["state"], "failed", "{fold}");
    let o = outcome(fold);
    assert_eq!(o["kind"], "output_limit", "{fold}");
    assert_eq!(o["limit"], 128 * MB);
    let written = o["bytes"].as_u64().unwrap();
    assert!(
        written > 128 * MB && written < 1000 * MB,
        "killed early, not after writing everything: {written} bytes"
    );
    assert!(
        fold["reason"]
            .as_str()
            .unwrap()
            .contains("outputs too large"),
        "{fold}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // Nothing of it crossed the wire.
    let attempt = last_attempt(&m, ids[0]);
    assert_eq!(attempt["outputs"], serde_json::json!([]), "{attempt}");
    let (status, _) = m.request("GET", &format!("/folds/{}/outputs/big", ids[0]), None);
    assert_eq!(status, 404);

    // The master is up and runs the next fold.
    let next = m.submit(vec![sh("echo fine > $DATARUN_OUTPUT/o")]);
    assert_eq!(
        m.wait_all(&next, Duration::from_secs(30))[0]["state"],
        "done"
    );
    let grown = m.stored_bytes().saturating_sub(before);
    assert!(
        grown < 10 * MB,
        "database and blob files grew {grown} bytes"
    );
    let (master, agent) = (common::peak_rss(m.pid()), common::peak_rss(m.agent_pid()));
    assert!(master < 200 * MB, "master peak RSS {master}");
    assert!(agent < 200 * MB, "agent peak RSS {agent}");
    eprintln!(
        "1.1 GB fold: killed after {written} bytes; stored +{grown} bytes; peak RSS master {} MB, agent {} MB",
        master / MB,
        agent / MB
    );
}

#[test]
fn a_100_mb_output_round_trips_byte_identical_with_bounded_master_memory() {
    let m = Master::start_with(None, &["--output-limit", "256M"]);
    let ids = m.submit(vec![sh(
        "head -c 100M /dev/urandom > $DATARUN_OUTPUT/big && \
         sha256sum $DATARUN_OUTPUT/big | cut -d' ' -f1 > $DATARUN_OUTPUT/big.sha256",
    )]);
    let folds = m.wait_all(&ids, Duration::from_secs(120));
    assert_eq!(folds[0]["state"], "done", "{}", folds[0]);
    let id = ids[0];
    let (status, headers, body) = m.get_bytes(&format!("/folds/{id}/outputs/big"));
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], (100 * MB).to_string().as_str());
    assert_eq!(body.len() as u64, 100 * MB);
    let got = datarun::store::sha256_hex(&body);
    drop(body);
    let (_, _, expected) = m.get_bytes(&format!("/folds/{id}/outputs/big.sha256"));
    assert_eq!(
        got,
        String::from_utf8(expected).unwrap().trim(),
        "byte-identical to what the fold wrote (sha256sum on the runner)"
    );
    let attempt = last_attempt(&m, id);
    let listed = attempt["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "big")
        .unwrap()
        .clone();
    assert_eq!(listed["sha256"], got.as_str());
    // The bytes are a blob file, not a database row.
    let file: PathBuf = m.data_dir().join("blobs").join(&got[..2]).join(&got);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 100 * MB);
    let db = std::fs::metadata(m.data_dir().join("datarun.db"))
        .unwrap()
        .len();
    assert!(db < 10 * MB, "the database holds {db} bytes");
    let master = common::peak_rss(m.pid());
    assert!(master < 200 * MB, "master peak RSS {master}");
    eprintln!(
        "100 MB output: peak RSS master {} MB, agent {} MB",
        master / MB,
        common::peak_rss(m.agent_pid()) / MB
    );
}

/// The journal directory of an attempt of the local runner.
fn journal_dir(m: &Master, attempt: &Value) -> PathBuf {
    m.data_dir()
        .join("agents")
        .join(attempt["runner"].as_str().unwrap())
        .join("attempts")
        .join(attempt["id"].as_i64().unwrap().to_string())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_master_restarted_over_poisoned_journal_entries_records_them_as_errors_and_goes_on() {
    let mut m = Master::start(None);
    let big = vec![0u8; 100_000];
    let big_sha = datarun::store::sha256_hex(&big);
    let ids = m.submit(vec![
        sh("sleep 2; echo poison > $DATARUN_OUTPUT/x"),
        sh("sleep 2; head -c 100000 /dev/zero > $DATARUN_OUTPUT/y"),
    ]);
    for id in &ids {
        m.wait_state(*id, "running", Duration::from_secs(20));
    }
    let attempts: Vec<Value> = ids.iter().map(|id| last_attempt(&m, *id)).collect();
    let dirs: Vec<PathBuf> = attempts.iter().map(|a| journal_dir(&m, a)).collect();
    // The master dies; its agent finishes both folds, journals their results and exits.
    let agent = m.agent_pid();
    m.kill9();
    wait_until("the agent exits", Duration::from_secs(30), || {
        !std::path::Path::new(&format!("/proc/{agent}")).exists()
    });
    for dir in &dirs {
        assert!(dir.join("result.json").is_file(), "{}", dir.display());
    }
    // Poison 1: the journaled report names a hash the output file does not have.
    let result = dirs[0].join("result.json");
    let mut report: Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert_eq!(report["outputs"][0]["name"], "x", "{report}");
    report["outputs"][0]["sha256"] = Value::from(datarun::store::sha256_hex(b"something else"));
    std::fs::write(&result, serde_json::to_vec(&report).unwrap()).unwrap();
    // Poison 2: a report the store cannot take in: where its output's blob file must go, a
    // file stands in the way of the directory.
    let report: Value =
        serde_json::from_slice(&std::fs::read(dirs[1].join("result.json")).unwrap()).unwrap();
    assert_eq!(report["outputs"][0]["sha256"], big_sha.as_str(), "{report}");
    let blobs = m.data_dir().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(&big_sha[..2]), b"in the way").unwrap();

    m.spawn();
    let folds = m.wait_all(&ids, Duration::from_secs(30));
    for (fold, why) in folds
        .iter()
        .zip(["does not match its sha256", "cannot put blob"])
    {
        assert_eq!(fold["state"], "failed", "{fold}");
        assert_eq!(outcome(fold)["kind"], "error", "{fold}");
        let message = outcome(fold)["message"].as_str().unwrap();
        assert!(
            message.starts_with("the master could not record this result: ")
                && message.contains(why),
            "{message}"
        );
    }
    // Both were acknowledged: the agent forgot them.
    for dir in &dirs {
        wait_until(
            "the journal entry is acknowledged",
            Duration::from_secs(10),
            || !dir.exists(),
        );
    }
    // The master is up and runs other folds.
    let next = m.submit(vec![sh("echo fine > $DATARUN_OUTPUT/o")]);
    let done = m.wait_all(&next, Duration::from_secs(30));
    assert_eq!(done[0]["state"], "done", "{}", done[0]);
    assert_eq!(
        m.cli_ok(&["fold", "output", &next[0].to_string(), "o"])
            .trim(),
        "fine"
    );
}

#[test]
fn uploads_stream_into_blob_files_and_inputs_and_long_logs_travel_in_chunks() {
    let m = Master::start_with(None, &["--max-body", "8M"]);
    // 3 MB: a blob file, sent to the agent in three chunks.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sha = datarun::store::sha256_hex(&data);
    let (status, v) = m.raw("POST", "/blobs", "application/octet-stream", data.clone());
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["sha256"].as_str(), v["size"].as_u64()),
        (Some(sha.as_str()), Some(3_000_000))
    );
    let file = m.data_dir().join("blobs").join(&sha[..2]).join(&sha);
    assert_eq!(std::fs::read(&file).unwrap(), data);
    // Over --max-body: 413, and nothing left behind.
    let (status, v) = m.raw(
        "POST",
        "/blobs",
        "application/octet-stream",
        vec![1; 9 << 20],
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    let tmp = m.data_dir().join("blobs/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "no temp file left"
    );

    // The fold checks its input; its 300 KB log is fetched like an output.
    let mut fold = sh(
        "sha256sum $DATARUN_INPUT/table.bin | cut -d' ' -f1 > $DATARUN_OUTPUT/seen; \
                       head -c 300000 /dev/zero | tr '\\0' 'x'",
    );
    fold["inputs"] = serde_json::json!([{"name": "table.bin", "sha256": sha}]);
    let ids = m.submit(vec![fold]);
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    assert_eq!(folds[0]["state"], "done", "{}", folds[0]);
    let seen = m.cli_ok(&["fold", "output", &ids[0].to_string(), "seen"]);
    assert_eq!(seen.trim(), sha, "the input arrived whole");
    let (status, headers, log) = m.get_bytes(&format!("/folds/{}/log", ids[0]));
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], "300000");
    assert!(log.iter().all(|&b| b == b'x') && log.len() == 300_000);
}
