//! Online backup and retention purge.

use super::{Result, Store, StoreError};
use rusqlite::params;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PurgeReport {
    pub outputs: u64,
    pub logs: u64,
    pub blobs: u64,
    pub bytes: u64,
}

impl Store {
    /// Writes a consistent copy of the database to `path` while the master keeps running.
    pub async fn backup_to(&self, path: PathBuf) -> Result<u64> {
        self.call(move |conn| {
            if path.exists() {
                return Err(StoreError::Conflict(format!(
                    "{} exists already",
                    path.display()
                )));
            }
            conn.execute("VACUUM INTO ?1", [path.to_string_lossy()])?;
            Ok(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0))
        })
        .await
    }

    /// Drops the outputs and logs of folds that ended (done, failed, removed) before `before`
    /// (ms since the epoch), then every blob nothing refers to any more that is older than that.
    pub async fn purge(&self, before: i64) -> Result<PurgeReport> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let old = "SELECT a.id FROM attempts a JOIN folds f ON f.id = a.fold_id
                       WHERE a.ended_at < ?1 AND f.state IN ('done', 'failed', 'removed')";
            let outputs = tx.execute(&format!("DELETE FROM outputs WHERE attempt_id IN ({old})"), [before])? as u64;
            let logs = tx.execute(
                &format!("UPDATE attempts SET log_sha256 = NULL WHERE log_sha256 IS NOT NULL AND id IN ({old})"),
                [before],
            )? as u64;
            let orphan = "FROM blobs WHERE created_at < ?1
                AND sha256 NOT IN (SELECT sha256 FROM outputs)
                AND sha256 NOT IN (SELECT sha256 FROM fold_inputs)
                AND sha256 NOT IN (SELECT log_sha256 FROM attempts WHERE log_sha256 IS NOT NULL)
                AND sha256 NOT IN (SELECT table_sha256 FROM datasets)
                AND sha256 NOT IN (SELECT train_sha256 FROM splits)
                AND sha256 NOT IN (SELECT test_sha256 FROM splits)
                AND sha256 NOT IN (SELECT sha256 FROM submission_blobs)
                AND sha256 NOT IN (SELECT j.value FROM datasets d, json_each(d.files) j)
                AND sha256 NOT IN (SELECT j.value FROM splits p, json_each(p.files) j)
                AND sha256 NOT IN (SELECT truth_sha256 FROM splits WHERE truth_sha256 IS NOT NULL)";
            let (blobs, bytes): (i64, i64) =
                tx.query_row(&format!("SELECT COUNT(*), COALESCE(SUM(size), 0) {orphan}"), [before], |r| Ok((r.get(0)?, r.get(1)?)))?;
            tx.execute(&format!("DELETE {orphan}"), [before])?;
            tx.commit()?;
            Ok(PurgeReport { outputs, logs, blobs: blobs as u64, bytes: bytes as u64 })
        })
        .await
    }

    /// The newest events of one kind, newest first: (at, detail).
    pub async fn events_of_kind(&self, kind: String, limit: u32) -> Result<Vec<(i64, String)>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT at, detail FROM events WHERE kind = ?1 ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![kind, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FoldSpec, Metrics, Outcome};
    use crate::protocol::Grant;
    use crate::store::now_ms;
    use crate::store::{NewAttempt, ResultInput};

    #[tokio::test]
    async fn purge_keeps_what_is_recent_or_referenced_and_backup_is_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let spec: FoldSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
        let ids = store
            .submit(
                "ann".into(),
                false,
                vec![(spec.clone(), None), (spec, None)],
            )
            .await
            .unwrap();
        let grant = Grant {
            millicpus: 1,
            memory: 1,
            gpus: vec![],
        };
        let new = |fold| NewAttempt {
            fold,
            runner: "r".into(),
            grant: grant.clone(),
        };
        let a = store.assign(vec![new(ids[0]), new(ids[1])]).await.unwrap();
        for (i, (attempt, _, _)) in a.iter().enumerate() {
            let input = ResultInput {
                attempt: *attempt,
                outcome: Outcome::Success,
                metrics: Metrics::default(),
                log: format!("log {i}").into_bytes(),
                outputs: vec![("o".into(), format!("output {i}").into_bytes())],
            };
            store.record_result(input).await.unwrap();
        }
        // Nothing is older than the epoch.
        assert_eq!(store.purge(0).await.unwrap(), PurgeReport::default());
        let report = store.purge(now_ms() + 1000).await.unwrap();
        assert_eq!((report.outputs, report.logs, report.blobs), (2, 2, 4));
        assert!(store.output(ids[0], "o".into()).await.is_err());
        assert!(store.log(ids[0]).await.unwrap().is_empty());
        assert_eq!(
            store.fold(ids[0]).await.unwrap().state,
            crate::model::FoldState::Done,
            "folds themselves stay"
        );

        let copy = dir.path().join("copy.db");
        assert!(store.backup_to(copy.clone()).await.unwrap() > 0);
        let other = Store::open(&copy).unwrap();
        assert_eq!(other.fold(ids[1]).await.unwrap().id, ids[1]);
        assert!(
            store.backup_to(copy).await.is_err(),
            "a backup never overwrites"
        );
    }
}
