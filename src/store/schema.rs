//! Connection settings and versioned migrations (PRAGMA user_version).

use rusqlite::Connection;

/// WAL with synchronous=FULL: a commit is fsynced before it returns, so a fold acknowledged
/// to a client is on disk. Foreign keys on.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

const MIGRATIONS: &[&str] = &[
    // 1: the core schema
    r#"
    CREATE TABLE blobs (
        sha256     TEXT PRIMARY KEY,
        size       INTEGER NOT NULL,
        data       BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE folds (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        owner           TEXT NOT NULL,
        queue           TEXT NOT NULL,
        priority        INTEGER NOT NULL,
        millicpus       INTEGER NOT NULL,
        memory          INTEGER NOT NULL,
        gpus            INTEGER NOT NULL,
        hard_limit_ms   INTEGER,
        spec            TEXT NOT NULL,
        state           TEXT NOT NULL,
        reason          TEXT,
        hold_code       TEXT,
        submitted_at    INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        retries_used    INTEGER NOT NULL DEFAULT 0,
        current_attempt INTEGER,
        last_attempt    INTEGER,
        seq             INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX folds_state ON folds(state);
    CREATE INDEX folds_seq ON folds(seq);
    CREATE TABLE fold_inputs (
        fold_id INTEGER NOT NULL REFERENCES folds(id),
        name    TEXT NOT NULL,
        sha256  TEXT NOT NULL REFERENCES blobs(sha256),
        PRIMARY KEY (fold_id, name)
    );
    CREATE TABLE attempts (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        fold_id      INTEGER NOT NULL REFERENCES folds(id),
        runner       TEXT NOT NULL,
        millicpus    INTEGER NOT NULL,
        memory       INTEGER NOT NULL,
        gpus         TEXT NOT NULL,
        state        TEXT NOT NULL,
        assigned_at  INTEGER NOT NULL,
        started_at   INTEGER,
        ended_at     INTEGER,
        outcome_kind TEXT,
        outcome      TEXT,
        wall_ms      INTEGER,
        cpu_ms       INTEGER,
        peak_memory  INTEGER,
        log_sha256   TEXT REFERENCES blobs(sha256)
    );
    CREATE INDEX attempts_fold ON attempts(fold_id);
    CREATE INDEX attempts_active ON attempts(state) WHERE state != 'ended';
    CREATE TABLE outputs (
        attempt_id INTEGER NOT NULL REFERENCES attempts(id),
        name       TEXT NOT NULL,
        sha256     TEXT NOT NULL REFERENCES blobs(sha256),
        size       INTEGER NOT NULL,
        PRIMARY KEY (attempt_id, name)
    );
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        fold_id    INTEGER,
        attempt_id INTEGER,
        kind       TEXT NOT NULL,
        detail     TEXT NOT NULL
    );
    CREATE INDEX events_fold ON events(fold_id);
    CREATE TABLE runners (
        name       TEXT PRIMARY KEY,
        spec       TEXT NOT NULL,
        facts      TEXT,
        state      TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen  INTEGER
    );
    CREATE TABLE tokens (
        name       TEXT PRIMARY KEY,
        hash       TEXT NOT NULL,
        admin      INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 2: the image a fold names, for the scheduler's image step
    r#"
    ALTER TABLE folds ADD COLUMN image TEXT;
    "#,
    // 3: runners drained by an operator stay drained across restarts
    r#"
    ALTER TABLE runners ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: requirements and rank expressions, for the scheduler's requirements step
    r#"
    ALTER TABLE folds ADD COLUMN requirements TEXT;
    ALTER TABLE folds ADD COLUMN rank TEXT;
    "#,
    // 5: datasets and their splits
    DATASETS_MIGRATION,
    // 6: submissions on cross-validation folds, their results and the feed
    SUBMISSIONS_MIGRATION,
    // 7: the /runapp/ compatibility layer's ids
    RUNAPP_MIGRATION,
    // 8: datasets driven by a problem script, and their custom splits
    PROBLEMS_MIGRATION,
    // 9: large blobs live in files (see `store::blobs`)
    BLOB_FILES_MIGRATION,
];

/// Where a blob's bytes are: `row` (in `data`, every blob written before this migration and
/// every small one since) or `file` (`<data>/blobs/ab/<sha256>`, `data` empty). Old rows stay
/// inline and are read as they are.
const BLOB_FILES_MIGRATION: &str = r#"
    ALTER TABLE blobs ADD COLUMN location TEXT NOT NULL DEFAULT 'row';
"#;

/// A **problem dataset** is several files with a problem script (`problem`, the script's name
/// among `files`, a JSON {name: sha256}); its `table_sha256` is the script's blob and `rows`
/// is 0. Its split is **custom**: the script's `prepare_data` runs as the queue fold `fold_id`
/// (`state` running → done or failed, with `reason`); when it is done, `files` holds the files
/// it wrote, `truth_sha256` the targets it reads (`truth.json`), `train_rows`/`test_rows` their
/// lengths, and its index blobs are the empty array (there are no row indices).
const PROBLEMS_MIGRATION: &str = r#"
    ALTER TABLE datasets ADD COLUMN problem TEXT;
    ALTER TABLE datasets ADD COLUMN files TEXT;
    ALTER TABLE splits ADD COLUMN kind TEXT NOT NULL DEFAULT 'held_out';
    ALTER TABLE splits ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
    ALTER TABLE splits ADD COLUMN reason TEXT;
    ALTER TABLE splits ADD COLUMN fold_id INTEGER REFERENCES folds(id);
    ALTER TABLE splits ADD COLUMN files TEXT;
    ALTER TABLE splits ADD COLUMN truth_sha256 TEXT REFERENCES blobs(sha256);
"#;

/// Submissions (files of a dataset's workflow elements) and their folds. Each submission fold
/// points at the queue fold of its current run (`fold_id`; earlier runs in
/// `submission_fold_runs`); its phase state, scores and timings are derived from that fold
/// once it stops and kept with the key of the run-end they came from (`settled_key`). The
/// "new results" feed hands out each settled result once (`delivered_key`).
/// `submission_blobs` names every blob a submission keeps (files, fold indices, predictions),
/// so a purge keeps them.
const SUBMISSIONS_MIGRATION: &str = r#"
    CREATE TABLE submissions (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset_id        INTEGER NOT NULL REFERENCES datasets(id),
        split_id          INTEGER REFERENCES splits(id),
        name              TEXT NOT NULL,
        owner             TEXT NOT NULL,
        files             TEXT NOT NULL,
        workflow_elements TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        UNIQUE (dataset_id, owner, name)
    );
    CREATE TABLE submission_folds (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        submission_id INTEGER NOT NULL REFERENCES submissions(id),
        fold_index    INTEGER NOT NULL,
        client_id     TEXT,
        train_sha256  TEXT NOT NULL REFERENCES blobs(sha256),
        test_sha256   TEXT NOT NULL REFERENCES blobs(sha256),
        train_rows    INTEGER NOT NULL,
        test_rows     INTEGER NOT NULL,
        fold_id       INTEGER NOT NULL REFERENCES folds(id),
        runs          INTEGER NOT NULL DEFAULT 1,
        state         TEXT NOT NULL DEFAULT 'TODO',
        reason        TEXT,
        traceback     TEXT,
        phases        TEXT,
        timings       TEXT,
        metrics       TEXT,
        scores        TEXT,
        predictions   TEXT,
        settled_key   TEXT,
        ended_at      INTEGER,
        result_seq    INTEGER,
        delivered_key TEXT,
        delivered_at  INTEGER
    );
    CREATE INDEX submission_folds_submission ON submission_folds(submission_id);
    CREATE INDEX submission_folds_fold ON submission_folds(fold_id);
    CREATE TABLE submission_fold_runs (
        submission_fold_id INTEGER NOT NULL REFERENCES submission_folds(id),
        run                INTEGER NOT NULL,
        fold_id            INTEGER NOT NULL REFERENCES folds(id),
        cause              TEXT NOT NULL,
        created_at         INTEGER NOT NULL,
        PRIMARY KEY (submission_fold_id, run)
    );
    CREATE TABLE submission_blobs (
        submission_id INTEGER NOT NULL REFERENCES submissions(id),
        sha256        TEXT NOT NULL REFERENCES blobs(sha256),
        PRIMARY KEY (submission_id, sha256)
    );
"#;

/// Datasets (a CSV table blob, its statistics, its score types) and their held-out splits
/// (train and test row indices as JSON-array blobs, and the train/test statistics).
const DATASETS_MIGRATION: &str = r#"
    CREATE TABLE datasets (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        name              TEXT NOT NULL UNIQUE,
        target_column     TEXT NOT NULL,
        workflow_elements TEXT NOT NULL,
        score_types       TEXT NOT NULL,
        table_sha256      TEXT NOT NULL REFERENCES blobs(sha256),
        size              INTEGER NOT NULL,
        rows              INTEGER NOT NULL,
        stats             TEXT NOT NULL,
        created_at        INTEGER NOT NULL
    );
    CREATE TABLE splits (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset_id    INTEGER NOT NULL REFERENCES datasets(id),
        ratio         REAL NOT NULL,
        random_state  INTEGER NOT NULL,
        stratified    INTEGER NOT NULL,
        train_sha256  TEXT NOT NULL REFERENCES blobs(sha256),
        test_sha256   TEXT NOT NULL REFERENCES blobs(sha256),
        train_rows    INTEGER NOT NULL,
        test_rows     INTEGER NOT NULL,
        stats         TEXT NOT NULL,
        created_at    INTEGER NOT NULL
    );
    CREATE INDEX splits_dataset ON splits(dataset_id);
"#;

/// The `/runapp/` compatibility layer (`api::runapp`): only what the original's clients name
/// and the native model lacks. A raw data is a dataset with the scikit-learn split made by
/// `rawdata/split/` (`split_id`); a databoard submission (`databoard_s_id`) is a native
/// submission; a databoard submission fold (`databoard_sf_id`) is a native submission fold,
/// with its priority name and its indices as the client encoded them (echoed back verbatim).
const RUNAPP_MIGRATION: &str = r#"
    CREATE TABLE runapp_rawdata (
        dataset_id INTEGER PRIMARY KEY,
        split_id   INTEGER
    );
    CREATE TABLE runapp_submissions (
        databoard_s_id INTEGER PRIMARY KEY,
        submission_id  INTEGER NOT NULL REFERENCES submissions(id)
    );
    CREATE TABLE runapp_folds (
        databoard_sf_id    INTEGER PRIMARY KEY,
        databoard_s_id     INTEGER NOT NULL REFERENCES runapp_submissions(databoard_s_id),
        submission_fold_id INTEGER NOT NULL REFERENCES submission_folds(id),
        priority           TEXT NOT NULL,
        train_is           TEXT NOT NULL,
        test_is            TEXT NOT NULL
    );
    CREATE INDEX runapp_folds_sf ON runapp_folds(submission_fold_id);
"#;

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the database schema is version {current}, newer than this datarun ({}) knows; use a newer datarun",
                MIGRATIONS.len()
            )),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_stored_before_migration_9_are_read_inline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A database as datarun left it at schema 8, with a blob in its row.
            let mut conn = Connection::open(&path).unwrap();
            configure(&conn).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..8] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 8).unwrap();
            tx.execute(
                "INSERT INTO blobs (sha256, size, data, created_at) VALUES (?1, 3, ?2, 0)",
                rusqlite::params![crate::store::sha256_hex(b"old"), b"old".to_vec()],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = crate::store::Store::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let data = rt
            .block_on(store.get_blob(crate::store::sha256_hex(b"old")))
            .unwrap();
        assert_eq!(data, b"old");
        let version: i64 = rt
            .block_on(store.call(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
