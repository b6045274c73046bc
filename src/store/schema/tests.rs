use super::*;

/// A database of version 8 with a tenant's rows, as main made them, migrates: datasets
/// keep their ids and sequence (owner NULL), blobs a fold or submission uses are owned by
/// that owner, `/runapp/` ids move under their submission's owner, tokens keep working.
#[test]
fn version_8_rows_migrate_to_tenancy() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
    configure(&conn).unwrap();
    for (i, sql) in MIGRATIONS[..8].iter().enumerate() {
        conn.execute_batch(sql).unwrap();
        conn.pragma_update(None, "user_version", (i + 1) as i64)
            .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO blobs VALUES ('t', 1, x'00', 0), ('i', 1, x'00', 0), ('u', 1, x'00', 0);
         INSERT INTO datasets (id, name, target_column, workflow_elements, score_types,
             table_sha256, size, rows, stats, created_at) VALUES
             (3, 'iris', 'y', '[]', '[]', 't', 1, 1, '{}', 0),
             (7, 'gone', 'y', '[]', '[]', 't', 1, 1, '{}', 0);
         DELETE FROM datasets WHERE id = 7;
         INSERT INTO splits (id, dataset_id, ratio, random_state, stratified, train_sha256,
             test_sha256, train_rows, test_rows, stats, created_at)
             VALUES (1, 3, 0.5, 1, 0, 'i', 'i', 1, 1, '{}', 0);
         INSERT INTO folds (id, owner, queue, priority, millicpus, memory, gpus, spec, state,
             submitted_at, updated_at) VALUES (1, 'ann', 'default', 0, 1, 1, 0, '{}', 'idle', 0, 0);
         INSERT INTO fold_inputs VALUES (1, 'train.csv', 'i');
         INSERT INTO submissions (id, dataset_id, split_id, name, owner, files,
             workflow_elements, created_at) VALUES (5, 3, 1, 's', 'ann', '{}', '[]', 0);
         INSERT INTO submission_folds (id, submission_id, fold_index, train_sha256,
             test_sha256, train_rows, test_rows, fold_id) VALUES (9, 5, 0, 'i', 'i', 1, 1, 1);
         INSERT INTO submission_blobs VALUES (5, 't');
         INSERT INTO runapp_submissions VALUES (40, 5);
         INSERT INTO runapp_folds VALUES (400, 40, 9, 'low', 'a', 'b');
         INSERT INTO tokens VALUES ('ann', 'h1', 0, 5), ('admin', 'h0', 1, 1);",
    )
    .unwrap();
    migrate(&mut conn).unwrap();
    let q = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get::<_, String>(0)).unwrap() };
    assert_eq!(
        q("SELECT group_concat(id || ':' || COALESCE(owner, '-') || ':' || name) FROM datasets"),
        "3:-:iris"
    );
    assert_eq!(
        q("SELECT CAST(seq AS TEXT) FROM sqlite_sequence WHERE name = 'datasets'"),
        "7",
        "a deleted dataset's id is not handed out again"
    );
    assert_eq!(
        q("SELECT group_concat(sha256 || ':' || owner) FROM (SELECT * FROM blob_owners ORDER BY sha256)"),
        "i:ann,t:ann",
        "the upload nobody used ('u') is owned by nobody"
    );
    assert_eq!(
        q("SELECT owner || ':' || databoard_s_id || ':' || submission_id FROM runapp_submissions"),
        "ann:40:5"
    );
    assert_eq!(
        q("SELECT owner || ':' || databoard_sf_id || ':' || submission_fold_id FROM runapp_folds"),
        "ann:400:9"
    );
    assert_eq!(
        q("SELECT group_concat(id || ':' || owner || ':' || hash) FROM tokens"),
        "1:admin:h0,2:ann:h1"
    );
    let keys: bool = conn
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert!(keys, "foreign keys are on again");
    conn.execute("DELETE FROM datasets WHERE id = 3", [])
        .expect_err("splits and submissions still refer to the rebuilt datasets table");
}

#[test]
fn a_database_migrated_past_an_empty_migration_9_gets_its_blob_locations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gap.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn).unwrap();
        // As a build with the placeholder left it: every migration, no `location`.
        conn.execute_batch("ALTER TABLE blobs DROP COLUMN location")
            .unwrap();
    }
    let store = crate::store::Store::open(&path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (sha, _) = rt.block_on(store.put_blob(vec![1; 100_000])).unwrap();
    assert_eq!(rt.block_on(store.get_blob(sha)).unwrap(), vec![1; 100_000]);
}

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
