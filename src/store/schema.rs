//! Connection settings and versioned migrations (PRAGMA user_version).

use rusqlite::{Connection, OptionalExtension};

/// WAL with synchronous=FULL: a commit is fsynced before it returns, so a fold acknowledged
/// to a client is on disk. Foreign keys on.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

mod submission_layer;
use submission_layer::{
    DATASETS_MIGRATION, PROBLEMS_MIGRATION, RUNAPP_MIGRATION, SUBMISSIONS_MIGRATION,
};

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
    // 10: tenancy: owned datasets and blobs, /runapp/ ids per owner, several tokens per owner
    TENANCY_MIGRATION,
    // 11: runner losses, counted apart from the fold's own retries
    r#"
    ALTER TABLE folds ADD COLUMN losses INTEGER NOT NULL DEFAULT 0;
    "#,
    // 12: counts per queue, owner and state kept by triggers; the group-commit marker
    COUNTS_MIGRATION,
    // 13: arrays of folds and dependencies between folds (see `store::waiting`)
    WAITING_MIGRATION,
    // 14: parameter sweeps (arrays whose points carry values) and stop-on-failure for
    // submissions (see `store::sweeps`)
    SWEEPS_MIGRATION,
    // 15: what produced each attempt's result (see `store::provenance`)
    r#"
    ALTER TABLE attempts ADD COLUMN provenance TEXT;
    "#,
    // 16: webhooks, each with its delivery kept as an outbox (see `store::webhooks`)
    WEBHOOKS_MIGRATION,
    // 17: provenance kept compact, runners' facts once each (see `store::provenance`)
    r#"
    CREATE TABLE provenance_facts (
        id    INTEGER PRIMARY KEY,
        facts TEXT NOT NULL UNIQUE
    );
    "#,
];

/// A sweep is an array (its id is the array's) whose points carry parameter values; `stop`
/// is its early-stop rule (JSON) and `stopped` says why its remaining points were removed.
/// A submission may stop its idle folds when one fails with its own error, as an array does.
const SWEEPS_MIGRATION: &str = r#"
    CREATE TABLE sweeps (
        array_id   INTEGER PRIMARY KEY REFERENCES arrays(id),
        owner      TEXT NOT NULL,
        params     TEXT NOT NULL,
        stop       TEXT,
        stopped    TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE sweep_points (
        array_id    INTEGER NOT NULL REFERENCES sweeps(array_id),
        array_index INTEGER NOT NULL,
        params      TEXT NOT NULL,
        PRIMARY KEY (array_id, array_index)
    );
    ALTER TABLE submissions ADD COLUMN stop_on_failure INTEGER NOT NULL DEFAULT 0;
"#;

/// Webhooks: one row per subscription (a fold, array or submission, and the URL to call when
/// it ends), signed with the secret of the token that asked for it. The row is its own
/// outbox: `armed` until the thing ends, then `pending` (body written in the transaction
/// that ended it) until delivered or given up (`failed`). Each token gets a webhook secret,
/// kept in the clear (it signs) and made at creation or on first use.
const WEBHOOKS_MIGRATION: &str = r#"
    ALTER TABLE tokens ADD COLUMN webhook_secret TEXT;
    CREATE TABLE webhooks (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id     TEXT NOT NULL UNIQUE,
        kind         TEXT NOT NULL,
        target       INTEGER NOT NULL,
        url          TEXT NOT NULL,
        owner        TEXT NOT NULL,
        token_id     INTEGER NOT NULL REFERENCES tokens(id),
        created_at   INTEGER NOT NULL,
        state        TEXT NOT NULL,
        body         TEXT,
        ended_at     INTEGER,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      INTEGER,
        last_status  INTEGER,
        last_error   TEXT,
        delivered_at INTEGER
    );
    CREATE INDEX webhooks_armed ON webhooks(kind, target) WHERE state = 'armed';
    CREATE INDEX webhooks_due ON webhooks(next_at) WHERE state = 'pending';
    CREATE INDEX webhooks_owner ON webhooks(owner, id);
"#;

/// Arrays (one row each: owner, size, the cap on how many of its folds are in line or running
/// at once) and each fold's place in one; dependencies, one row per (child, parent) with when
/// the child may go (`ok`: the parent done; `any`: ended however), found from the parent
/// when it ends.
const WAITING_MIGRATION: &str = r#"
    CREATE TABLE arrays (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        owner      TEXT NOT NULL,
        size       INTEGER NOT NULL,
        cap        INTEGER,
        created_at INTEGER NOT NULL,
        -- When a fold fails with its own error, its idle and waiting siblings are removed.
        stop_on_failure INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX arrays_owner ON arrays(owner);
    ALTER TABLE folds ADD COLUMN array_id INTEGER REFERENCES arrays(id);
    ALTER TABLE folds ADD COLUMN array_index INTEGER;
    CREATE UNIQUE INDEX folds_array ON folds(array_id, array_index) WHERE array_id IS NOT NULL;
    CREATE INDEX folds_array_state ON folds(array_id, state) WHERE array_id IS NOT NULL;
    CREATE TABLE fold_deps (
        child  INTEGER NOT NULL,
        parent INTEGER NOT NULL,
        kind   TEXT NOT NULL,
        PRIMARY KEY (child, parent)
    ) WITHOUT ROWID;
    CREATE INDEX fold_deps_parent ON fold_deps(parent);
"#;

/// Where a blob's bytes are: `row` (in `data`, every blob written before this migration and
/// every small one since) or `file` (`<data>/blobs/ab/<sha256>`, `data` empty). Old rows stay
/// inline and are read as they are.
const BLOB_FILES_MIGRATION: &str = r#"
    ALTER TABLE blobs ADD COLUMN location TEXT NOT NULL DEFAULT 'row';
"#;

/// `fold_counts` holds how many folds each (queue, owner, state) has, kept by triggers in the
/// same transaction as every change, so `queue status` reads a few rows instead of counting
/// the whole queue. `sync_marker` is the row a group commit writes last, with a full sync,
/// to make the batch's earlier commits durable (see `Store`).
const COUNTS_MIGRATION: &str = r#"
    CREATE TABLE fold_counts (
        queue TEXT NOT NULL,
        owner TEXT NOT NULL,
        state TEXT NOT NULL,
        n     INTEGER NOT NULL,
        PRIMARY KEY (queue, owner, state)
    ) WITHOUT ROWID;
    INSERT INTO fold_counts (queue, owner, state, n)
        SELECT queue, owner, state, COUNT(*) FROM folds GROUP BY queue, owner, state;
    CREATE TRIGGER fold_counts_insert AFTER INSERT ON folds BEGIN
        INSERT INTO fold_counts (queue, owner, state, n) VALUES (NEW.queue, NEW.owner, NEW.state, 1)
            ON CONFLICT (queue, owner, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER fold_counts_update AFTER UPDATE OF state, queue, owner ON folds
        WHEN OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue OR OLD.owner IS NOT NEW.owner
    BEGIN
        UPDATE fold_counts SET n = n - 1
            WHERE queue = OLD.queue AND owner = OLD.owner AND state = OLD.state;
        INSERT INTO fold_counts (queue, owner, state, n) VALUES (NEW.queue, NEW.owner, NEW.state, 1)
            ON CONFLICT (queue, owner, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER fold_counts_delete AFTER DELETE ON folds BEGIN
        UPDATE fold_counts SET n = n - 1
            WHERE queue = OLD.queue AND owner = OLD.owner AND state = OLD.state;
    END;
    CREATE TABLE sync_marker (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
    INSERT INTO sync_marker (id, n) VALUES (1, 0);
"#;

/// Tenants. A dataset has an `owner` (NULL for those made before: only admins see them) and
/// its name is unique per owner; `blob_owners` says who may name a blob as a fold input
/// (whoever uploaded its bytes, or had the store put them for them), filled here from what
/// each owner's folds and submissions already use; the `/runapp/` ids are chosen by each
/// client, so they are per owner; `tokens` become one row per token (several per owner),
/// found by the hash's unique index, with an expiry, a revocation and a last use. Tables
/// are rebuilt the SQLite way (create, copy, drop, rename), keeping AUTOINCREMENT sequences.
/// Owner indexes make an owner's listings and counts cost their rows, not everyone's.
const TENANCY_MIGRATION: &str = r#"
    CREATE TABLE datasets_v10 (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        owner             TEXT,
        name              TEXT NOT NULL,
        target_column     TEXT NOT NULL,
        workflow_elements TEXT NOT NULL,
        score_types       TEXT NOT NULL,
        table_sha256      TEXT NOT NULL REFERENCES blobs(sha256),
        size              INTEGER NOT NULL,
        rows              INTEGER NOT NULL,
        stats             TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        problem           TEXT,
        files             TEXT,
        UNIQUE (owner, name)
    );
    INSERT INTO datasets_v10 (id, owner, name, target_column, workflow_elements, score_types,
        table_sha256, size, rows, stats, created_at, problem, files)
    SELECT id, NULL, name, target_column, workflow_elements, score_types, table_sha256, size,
        rows, stats, created_at, problem, files FROM datasets;
    DELETE FROM sqlite_sequence WHERE name = 'datasets_v10';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'datasets_v10', seq FROM sqlite_sequence
        WHERE name = 'datasets';
    DROP TABLE datasets;
    ALTER TABLE datasets_v10 RENAME TO datasets;
    CREATE INDEX datasets_owner ON datasets(owner);

    CREATE TABLE blob_owners (
        sha256 TEXT NOT NULL,
        owner  TEXT NOT NULL,
        PRIMARY KEY (sha256, owner)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO blob_owners (sha256, owner)
        SELECT i.sha256, f.owner FROM fold_inputs i JOIN folds f ON f.id = i.fold_id;
    INSERT OR IGNORE INTO blob_owners (sha256, owner)
        SELECT b.sha256, s.owner FROM submission_blobs b JOIN submissions s ON s.id = b.submission_id;
    INSERT OR IGNORE INTO blob_owners (sha256, owner)
        SELECT o.sha256, f.owner FROM outputs o JOIN attempts a ON a.id = o.attempt_id
        JOIN folds f ON f.id = a.fold_id;

    CREATE TABLE runapp_submissions_v10 (
        owner          TEXT NOT NULL,
        databoard_s_id INTEGER NOT NULL,
        submission_id  INTEGER NOT NULL REFERENCES submissions(id),
        PRIMARY KEY (owner, databoard_s_id)
    );
    INSERT INTO runapp_submissions_v10 (owner, databoard_s_id, submission_id)
        SELECT s.owner, r.databoard_s_id, r.submission_id
        FROM runapp_submissions r JOIN submissions s ON s.id = r.submission_id;
    CREATE TABLE runapp_folds_v10 (
        owner              TEXT NOT NULL,
        databoard_sf_id    INTEGER NOT NULL,
        databoard_s_id     INTEGER NOT NULL,
        submission_fold_id INTEGER NOT NULL REFERENCES submission_folds(id),
        priority           TEXT NOT NULL,
        train_is           TEXT NOT NULL,
        test_is            TEXT NOT NULL,
        PRIMARY KEY (owner, databoard_sf_id),
        FOREIGN KEY (owner, databoard_s_id) REFERENCES runapp_submissions(owner, databoard_s_id)
    );
    INSERT INTO runapp_folds_v10 (owner, databoard_sf_id, databoard_s_id, submission_fold_id,
        priority, train_is, test_is)
    SELECT s.owner, f.databoard_sf_id, f.databoard_s_id, f.submission_fold_id, f.priority,
        f.train_is, f.test_is
    FROM runapp_folds f JOIN runapp_submissions r ON r.databoard_s_id = f.databoard_s_id
    JOIN submissions s ON s.id = r.submission_id;
    DROP TABLE runapp_folds;
    DROP TABLE runapp_submissions;
    ALTER TABLE runapp_submissions_v10 RENAME TO runapp_submissions;
    ALTER TABLE runapp_folds_v10 RENAME TO runapp_folds;
    CREATE INDEX runapp_folds_sf ON runapp_folds(submission_fold_id);

    CREATE TABLE tokens_v10 (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        owner        TEXT NOT NULL,
        hash         TEXT NOT NULL UNIQUE,
        admin        INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER
    );
    INSERT INTO tokens_v10 (owner, hash, admin, created_at)
        SELECT name, hash, admin, created_at FROM tokens ORDER BY created_at, name;
    DROP TABLE tokens;
    ALTER TABLE tokens_v10 RENAME TO tokens;
    CREATE INDEX tokens_owner ON tokens(owner);

    CREATE INDEX folds_owner ON folds(owner);
    CREATE INDEX submissions_owner ON submissions(owner);
"#;

/// off meanwhile (SQLite's way to rebuild a table others refer to) and checked before each
/// commit, so a migration that would break them changes nothing.
/// Migration 9 was an empty placeholder in builds made while it was reserved: a database they
/// migrated past it lacks `blobs.location`, which is added here (as migration 9 does).
fn blob_location(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('blobs') WHERE name = 'location')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch(BLOB_FILES_MIGRATION)?;
    }
    Ok(())
}

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
    if current >= 9 {
        blob_location(conn)?;
    }
    if current == MIGRATIONS.len() {
        return Ok(());
    }
    let keys: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let applied = (|| {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            let broken: Option<String> = tx
                .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
                .optional()?;
            if let Some(table) = broken {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                    Some(format!(
                        "migration {}: a row of {table} refers to a missing row; nothing was changed",
                        i + 1
                    )),
                ));
            }
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", keys)?;
    applied
}

#[cfg(test)]
mod tests;
