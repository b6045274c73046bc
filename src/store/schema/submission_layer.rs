//! The submission layer's tables (datasets and splits, submissions and their folds, problem
//! datasets, the `/runapp/` id maps): their migrations' SQL, applied in `MIGRATIONS`' order
//! with the queue's.

/// A **problem dataset** is several files with a problem script (`problem`, the script's name
/// among `files`, a JSON {name: sha256}); its `table_sha256` is the script's blob and `rows`
/// is 0. Its split is **custom**: the script's `prepare_data` runs as the queue fold `fold_id`
/// (`state` running → done or failed, with `reason`); when it is done, `files` holds the files
/// it wrote, `truth_sha256` the targets it reads (`truth.json`), `train_rows`/`test_rows` their
/// lengths, and its index blobs are the empty array (there are no row indices).
pub(super) const PROBLEMS_MIGRATION: &str = r#"
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
pub(super) const SUBMISSIONS_MIGRATION: &str = r#"
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
pub(super) const DATASETS_MIGRATION: &str = r#"
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
pub(super) const RUNAPP_MIGRATION: &str = r#"
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
