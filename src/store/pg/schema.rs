//! The PostgreSQL store's versioned migrations: the columns the queue's core operations need,
//! as the SQLite schema has them (`store::schema`), plus the leadership row (`lease`).
//! Applied in one transaction under an advisory lock, so masters starting together migrate
//! once; `schema_version` says how far a database is.

use tokio_postgres::Client;

/// Taken (for the migrating transaction) by whoever migrates.
const MIGRATION_LOCK: i64 = 0x6461_7461_7275_6e00; // "datarun\0"

const MIGRATIONS: &[&str] = &[
    // 1: the queue's core: blobs (inline), folds, their inputs, attempts, outputs, events,
    //    and the leadership lease
    r#"
    CREATE TABLE blobs (
        sha256     TEXT PRIMARY KEY,
        size       BIGINT NOT NULL,
        data       BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE blob_owners (
        sha256 TEXT NOT NULL REFERENCES blobs(sha256) ON DELETE CASCADE,
        owner  TEXT NOT NULL,
        PRIMARY KEY (sha256, owner)
    );
    CREATE TABLE folds (
        id              BIGSERIAL PRIMARY KEY,
        owner           TEXT NOT NULL,
        queue           TEXT NOT NULL,
        priority        BIGINT NOT NULL,
        millicpus       BIGINT NOT NULL,
        memory          BIGINT NOT NULL,
        gpus            BIGINT NOT NULL,
        hard_limit_ms   BIGINT,
        spec            TEXT NOT NULL,
        state           TEXT NOT NULL,
        reason          TEXT,
        hold_code       TEXT,
        submitted_at    BIGINT NOT NULL,
        updated_at      BIGINT NOT NULL,
        attempts        BIGINT NOT NULL DEFAULT 0,
        retries_used    BIGINT NOT NULL DEFAULT 0,
        losses          BIGINT NOT NULL DEFAULT 0,
        current_attempt BIGINT,
        last_attempt    BIGINT,
        seq             BIGINT NOT NULL DEFAULT 0,
        image           TEXT,
        requirements    TEXT,
        rank            TEXT
    );
    CREATE INDEX folds_state ON folds(state);
    CREATE INDEX folds_seq ON folds(seq);
    CREATE INDEX folds_owner ON folds(owner);
    CREATE TABLE fold_inputs (
        fold_id BIGINT NOT NULL REFERENCES folds(id),
        name    TEXT NOT NULL,
        sha256  TEXT NOT NULL REFERENCES blobs(sha256),
        PRIMARY KEY (fold_id, name)
    );
    CREATE TABLE attempts (
        id           BIGSERIAL PRIMARY KEY,
        fold_id      BIGINT NOT NULL REFERENCES folds(id),
        runner       TEXT NOT NULL,
        millicpus    BIGINT NOT NULL,
        memory       BIGINT NOT NULL,
        gpus         TEXT NOT NULL,
        state        TEXT NOT NULL,
        assigned_at  BIGINT NOT NULL,
        started_at   BIGINT,
        ended_at     BIGINT,
        outcome_kind TEXT,
        outcome      TEXT,
        wall_ms      BIGINT,
        cpu_ms       BIGINT,
        peak_memory  BIGINT,
        log_sha256   TEXT REFERENCES blobs(sha256)
    );
    CREATE INDEX attempts_fold ON attempts(fold_id);
    CREATE INDEX attempts_active ON attempts(state) WHERE state <> 'ended';
    CREATE TABLE outputs (
        attempt_id BIGINT NOT NULL REFERENCES attempts(id),
        name       TEXT NOT NULL,
        sha256     TEXT NOT NULL REFERENCES blobs(sha256),
        size       BIGINT NOT NULL,
        PRIMARY KEY (attempt_id, name)
    );
    CREATE TABLE events (
        id         BIGSERIAL PRIMARY KEY,
        at         BIGINT NOT NULL,
        fold_id    BIGINT,
        attempt_id BIGINT,
        kind       TEXT NOT NULL,
        detail     TEXT NOT NULL
    );
    CREATE INDEX events_fold ON events(fold_id);
    CREATE TABLE leadership (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        holder     TEXT NOT NULL,
        generation BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    INSERT INTO leadership (id, holder, generation, expires_at) VALUES (1, '', 0, '-infinity');
    "#,
    // 2: arrays of folds and dependencies between folds, as SQLite's migration 13 (the
    //    columns `records::FOLD_COLUMNS` reads; waiting folds are settled since 5)
    r#"
    CREATE TABLE arrays (
        id         BIGSERIAL PRIMARY KEY,
        owner      TEXT NOT NULL,
        size       BIGINT NOT NULL,
        cap        BIGINT,
        created_at BIGINT NOT NULL
    );
    ALTER TABLE folds ADD COLUMN array_id BIGINT REFERENCES arrays(id);
    ALTER TABLE folds ADD COLUMN array_index BIGINT;
    CREATE UNIQUE INDEX folds_array ON folds(array_id, array_index) WHERE array_id IS NOT NULL;
    CREATE TABLE fold_deps (
        child  BIGINT NOT NULL,
        parent BIGINT NOT NULL,
        kind   TEXT NOT NULL,
        PRIMARY KEY (child, parent)
    );
    CREATE INDEX fold_deps_parent ON fold_deps(parent);
    "#,
    // 3: what a master running on PostgreSQL needs beside the queue: runners as last seen
    //    (SQLite's `runners`) and API tokens (SQLite's `tokens` since its migration 10)
    r#"
    CREATE TABLE runners (
        name       TEXT PRIMARY KEY,
        spec       TEXT NOT NULL,
        facts      TEXT,
        state      TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen  BIGINT,
        drained    BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE TABLE tokens (
        id           BIGSERIAL PRIMARY KEY,
        owner        TEXT NOT NULL,
        hash         TEXT NOT NULL UNIQUE,
        admin        BOOLEAN NOT NULL,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT,
        revoked_at   BIGINT,
        last_used_at BIGINT
    );
    CREATE INDEX tokens_owner ON tokens(owner);
    "#,
    // 4: provenance records, compact, and runners' facts once each (SQLite's migrations 15
    //    and 17; `store::provenance`); facts found by their md5 (a btree entry has a limit)
    r#"
    ALTER TABLE attempts ADD COLUMN provenance TEXT;
    CREATE TABLE provenance_facts (
        id    BIGSERIAL PRIMARY KEY,
        facts TEXT NOT NULL
    );
    CREATE UNIQUE INDEX provenance_facts_md5 ON provenance_facts (md5(facts));
    "#,
    // 5: an array whose fold fails with its own error may stop its siblings (SQLite's
    //    migration 14; `store::waiting`)
    r#"
    ALTER TABLE arrays ADD COLUMN stop_on_failure BOOLEAN NOT NULL DEFAULT FALSE;
    "#,
    // 6: webhooks, each with its delivery kept as an outbox, and a token's secret that signs
    //    them (SQLite's migration 16; `store::webhooks`)
    r#"
    ALTER TABLE tokens ADD COLUMN webhook_secret TEXT;
    CREATE TABLE webhooks (
        id           BIGSERIAL PRIMARY KEY,
        event_id     TEXT NOT NULL UNIQUE,
        kind         TEXT NOT NULL,
        target       BIGINT NOT NULL,
        url          TEXT NOT NULL,
        owner        TEXT NOT NULL,
        token_id     BIGINT NOT NULL REFERENCES tokens(id),
        created_at   BIGINT NOT NULL,
        state        TEXT NOT NULL,
        body         TEXT,
        ended_at     BIGINT,
        attempts     BIGINT NOT NULL DEFAULT 0,
        next_at      BIGINT,
        last_status  BIGINT,
        last_error   TEXT,
        delivered_at BIGINT
    );
    CREATE INDEX webhooks_armed ON webhooks(kind, target) WHERE state = 'armed';
    CREATE INDEX webhooks_due ON webhooks(next_at) WHERE state = 'pending';
    CREATE INDEX webhooks_owner ON webhooks(owner, id);
    "#,
    // 7: sweeps, arrays whose points carry parameter values (SQLite's migration 14;
    //    `store::sweeps`)
    r#"
    CREATE TABLE sweeps (
        array_id   BIGINT PRIMARY KEY REFERENCES arrays(id),
        owner      TEXT NOT NULL,
        params     TEXT NOT NULL,
        stop       TEXT,
        stopped    TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE sweep_points (
        array_id    BIGINT NOT NULL REFERENCES sweeps(array_id),
        array_index BIGINT NOT NULL,
        params      TEXT NOT NULL,
        PRIMARY KEY (array_id, array_index)
    );
    "#,
    // 8: the submission layer: datasets and their splits, problem datasets and custom splits,
    //    submissions, their folds, runs and the blobs they keep, the `/runapp/` ids (SQLite's
    //    migrations 5 to 8, 10 and 14, as they end up; `store::datasets`, `problems`,
    //    `submissions`, `runapp`)
    r#"
    CREATE TABLE datasets (
        id                BIGSERIAL PRIMARY KEY,
        owner             TEXT,
        name              TEXT NOT NULL,
        target_column     TEXT NOT NULL,
        workflow_elements TEXT NOT NULL,
        score_types       TEXT NOT NULL,
        table_sha256      TEXT NOT NULL REFERENCES blobs(sha256),
        size              BIGINT NOT NULL,
        rows              BIGINT NOT NULL,
        stats             TEXT NOT NULL,
        created_at        BIGINT NOT NULL,
        problem           TEXT,
        files             TEXT,
        UNIQUE (owner, name)
    );
    CREATE INDEX datasets_owner ON datasets(owner);
    CREATE TABLE splits (
        id           BIGSERIAL PRIMARY KEY,
        dataset_id   BIGINT NOT NULL REFERENCES datasets(id),
        ratio        DOUBLE PRECISION NOT NULL,
        random_state BIGINT NOT NULL,
        stratified   BOOLEAN NOT NULL,
        train_sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        test_sha256  TEXT NOT NULL REFERENCES blobs(sha256),
        train_rows   BIGINT NOT NULL,
        test_rows    BIGINT NOT NULL,
        stats        TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        kind         TEXT NOT NULL DEFAULT 'held_out',
        state        TEXT NOT NULL DEFAULT 'done',
        reason       TEXT,
        fold_id      BIGINT REFERENCES folds(id),
        files        TEXT,
        truth_sha256 TEXT REFERENCES blobs(sha256)
    );
    CREATE INDEX splits_dataset ON splits(dataset_id);
    CREATE TABLE submissions (
        id                BIGSERIAL PRIMARY KEY,
        dataset_id        BIGINT NOT NULL REFERENCES datasets(id),
        split_id          BIGINT REFERENCES splits(id),
        name              TEXT NOT NULL,
        owner             TEXT NOT NULL,
        files             TEXT NOT NULL,
        workflow_elements TEXT NOT NULL,
        created_at        BIGINT NOT NULL,
        stop_on_failure   BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (dataset_id, owner, name)
    );
    CREATE INDEX submissions_owner ON submissions(owner);
    CREATE TABLE submission_folds (
        id            BIGSERIAL PRIMARY KEY,
        submission_id BIGINT NOT NULL REFERENCES submissions(id),
        fold_index    BIGINT NOT NULL,
        client_id     TEXT,
        train_sha256  TEXT NOT NULL REFERENCES blobs(sha256),
        test_sha256   TEXT NOT NULL REFERENCES blobs(sha256),
        train_rows    BIGINT NOT NULL,
        test_rows     BIGINT NOT NULL,
        fold_id       BIGINT NOT NULL REFERENCES folds(id),
        runs          BIGINT NOT NULL DEFAULT 1,
        state         TEXT NOT NULL DEFAULT 'TODO',
        reason        TEXT,
        traceback     TEXT,
        phases        TEXT,
        timings       TEXT,
        metrics       TEXT,
        scores        TEXT,
        predictions   TEXT,
        settled_key   TEXT,
        ended_at      BIGINT,
        result_seq    BIGINT,
        delivered_key TEXT,
        delivered_at  BIGINT
    );
    CREATE INDEX submission_folds_submission ON submission_folds(submission_id);
    CREATE INDEX submission_folds_fold ON submission_folds(fold_id);
    CREATE INDEX submission_folds_result ON submission_folds(result_seq);
    CREATE TABLE submission_fold_runs (
        submission_fold_id BIGINT NOT NULL REFERENCES submission_folds(id),
        run                BIGINT NOT NULL,
        fold_id            BIGINT NOT NULL REFERENCES folds(id),
        cause              TEXT NOT NULL,
        created_at         BIGINT NOT NULL,
        PRIMARY KEY (submission_fold_id, run)
    );
    CREATE TABLE submission_blobs (
        submission_id BIGINT NOT NULL REFERENCES submissions(id),
        sha256        TEXT NOT NULL REFERENCES blobs(sha256),
        PRIMARY KEY (submission_id, sha256)
    );
    CREATE TABLE runapp_rawdata (
        dataset_id BIGINT PRIMARY KEY,
        split_id   BIGINT
    );
    CREATE TABLE runapp_submissions (
        owner          TEXT NOT NULL,
        databoard_s_id BIGINT NOT NULL,
        submission_id  BIGINT NOT NULL REFERENCES submissions(id),
        PRIMARY KEY (owner, databoard_s_id)
    );
    CREATE TABLE runapp_folds (
        owner              TEXT NOT NULL,
        databoard_sf_id    BIGINT NOT NULL,
        databoard_s_id     BIGINT NOT NULL,
        submission_fold_id BIGINT NOT NULL REFERENCES submission_folds(id),
        priority           TEXT NOT NULL,
        train_is           TEXT NOT NULL,
        test_is            TEXT NOT NULL,
        PRIMARY KEY (owner, databoard_sf_id),
        FOREIGN KEY (owner, databoard_s_id) REFERENCES runapp_submissions(owner, databoard_s_id)
    );
    CREATE INDEX runapp_folds_sf ON runapp_folds(submission_fold_id);
    "#,
];

/// The newest schema version this build knows.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Migrates the database to [`VERSION`]; refuses one newer than this build.
pub async fn migrate(client: &mut Client) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| e.to_string())?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await
        .map_err(|e| e.to_string())?;
    let version: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(|e| e.to_string())?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if version > VERSION {
        return Err(format!(
            "the database is at schema version {version}, newer than this datarun's {VERSION}: \
             upgrade datarun"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
    }
    tx.execute("DELETE FROM schema_version", &[])
        .await
        .map_err(|e| e.to_string())?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&VERSION],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}
