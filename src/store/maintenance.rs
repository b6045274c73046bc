//! Online backup and retention purge.

use super::{blobs, BlobDir, Result, Store, StoreError};
use rusqlite::params;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PurgeReport {
    pub outputs: u64,
    pub logs: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// Blob files no row names (a transaction that never committed, a transfer that died),
    /// removed with their bytes.
    pub stray_files: u64,
    pub stray_bytes: u64,
}

/// What a backup wrote: the database copy and the blob files beside it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupReport {
    pub db_bytes: u64,
    pub blob_files: u64,
    pub blob_bytes: u64,
    /// Blob files the copy names that were gone by the time they were linked (purged).
    pub missing: u64,
}

/// Where a backup database's blob files go: `datarun-<time>.blobs/` beside
/// `datarun-<time>.db`, laid out as the data dir's `blobs/`.
pub fn backup_blobs_dir(db: &Path) -> PathBuf {
    db.with_extension("blobs")
}

/// Temp files of the blob store older than this are swept whatever the retention.
const TEMP_AGE: Duration = Duration::from_secs(3600);

/// The condition (on `blobs`) that nothing refers to a blob any more: what a purge deletes
/// (and `sweep keep` of the outputs it drops).
pub(super) const UNREFERENCED: &str = "sha256 NOT IN (SELECT sha256 FROM outputs)
    AND sha256 NOT IN (SELECT sha256 FROM fold_inputs)
    AND sha256 NOT IN (SELECT log_sha256 FROM attempts WHERE log_sha256 IS NOT NULL)
    AND sha256 NOT IN (SELECT table_sha256 FROM datasets)
    AND sha256 NOT IN (SELECT train_sha256 FROM splits)
    AND sha256 NOT IN (SELECT test_sha256 FROM splits)
    AND sha256 NOT IN (SELECT sha256 FROM submission_blobs)
    AND sha256 NOT IN (SELECT j.value FROM datasets d, json_each(d.files) j)
    AND sha256 NOT IN (SELECT j.value FROM splits p, json_each(p.files) j)
    AND sha256 NOT IN (SELECT truth_sha256 FROM splits WHERE truth_sha256 IS NOT NULL)";

impl Store {
    /// Writes a consistent copy of the database to `path` (`VACUUM INTO`) while the master
    /// keeps running, and the blob files it names to [`backup_blobs_dir`] (hard links when on
    /// the same filesystem, copies otherwise): together they are a data dir's `datarun.db`
    /// and `blobs/`.
    pub async fn backup_to(&self, path: PathBuf) -> Result<BackupReport> {
        let (db_bytes, files) = {
            let path = path.clone();
            self.call(move |conn| {
                if path.exists() {
                    return Err(StoreError::Conflict(format!(
                        "{} exists already",
                        path.display()
                    )));
                }
                conn.execute("VACUUM INTO ?1", [path.to_string_lossy()])?;
                let files: Vec<String> = conn
                    .prepare("SELECT sha256 FROM blobs WHERE location = 'file'")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok((
                    std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                    files,
                ))
            })
            .await?
        };
        let from = self.files.clone();
        let to = BlobDir::new(backup_blobs_dir(&path));
        tokio::task::spawn_blocking(move || {
            let mut report = BackupReport {
                db_bytes,
                ..Default::default()
            };
            for sha in files {
                match from.copy_to(&sha, &to) {
                    Ok(size) => {
                        report.blob_files += 1;
                        report.blob_bytes += size;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.missing += 1,
                    Err(e) => {
                        return Err(StoreError::Io(format!(
                            "cannot copy blob {sha} into {}: {e}",
                            to.root().display()
                        )))
                    }
                }
            }
            Ok(report)
        })
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?
    }

    /// Drops the outputs and logs of folds that ended (done, failed, removed) before `before`
    /// (ms since the epoch), then every blob nothing refers to any more that is older than that
    /// (its row, and its file), then blob files no row names that are older than that.
    pub async fn purge(&self, before: i64) -> Result<PurgeReport> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, crate::store::QueueStore::purge(pg, before)).await;
        }
        let (report, files) = self.call(move |conn| {
            let tx = conn.transaction()?;
            let old = "SELECT a.id FROM attempts a JOIN folds f ON f.id = a.fold_id
                       WHERE a.ended_at < ?1 AND f.state IN ('done', 'failed', 'removed')";
            let outputs = tx.execute(&format!("DELETE FROM outputs WHERE attempt_id IN ({old})"), [before])? as u64;
            let logs = tx.execute(
                &format!("UPDATE attempts SET log_sha256 = NULL WHERE log_sha256 IS NOT NULL AND id IN ({old})"),
                [before],
            )? as u64;
            let orphan = format!("FROM blobs WHERE created_at < ?1 AND {UNREFERENCED}");
            let (blobs, bytes): (i64, i64) =
                tx.query_row(&format!("SELECT COUNT(*), COALESCE(SUM(size), 0) {orphan}"), [before], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let files: Vec<String> = tx
                .prepare(&format!("SELECT sha256 {orphan} AND location = 'file'"))?
                .query_map([before], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            tx.execute(&format!("DELETE {orphan}"), [before])?;
            tx.commit()?;
            Ok((PurgeReport { outputs, logs, blobs: blobs as u64, bytes: bytes as u64, ..Default::default() }, files))
        })
        .await?;
        // The rows' deletion is durable now: their files follow (unless a row names one
        // again by now), then blob files no row names and stale temp files are swept.
        let cutoff = UNIX_EPOCH + Duration::from_millis(before.max(0) as u64);
        let (stray_files, stray_bytes) = self
            .call(move |conn| {
                blobs::delete_files(conn, &files)?;
                let temp_cutoff = cutoff.min(SystemTime::now() - TEMP_AGE);
                let dir = BlobDir::of(conn)?;
                let conn = &*conn;
                dir.sweep(cutoff, temp_cutoff, |sha| {
                    blobs::named(conn, sha).unwrap_or(true)
                })
                .map_err(|e| StoreError::Io(format!("purge: sweeping the blob files: {e}")))
            })
            .await?;
        Ok(PurgeReport {
            stray_files,
            stray_bytes,
            ..report
        })
    }

    /// The newest events of one kind, newest first: (at, detail).
    pub async fn events_of_kind(&self, kind: String, limit: u32) -> Result<Vec<(i64, String)>> {
        if let Some(pg) = self.pg() {
            return pg.events_of_kind(kind, limit).await;
        }
        self.read(move |conn| {
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

    fn backups_blobs_file(db: &Path, sha: &str) -> PathBuf {
        backup_blobs_dir(db).join(&sha[..2]).join(sha)
    }

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
        // The first fold's output is large enough to be a file.
        let large = vec![b'a'; crate::store::INLINE_MAX as usize + 1];
        let large_sha = crate::store::sha256_hex(&large);
        let blobs = dir.path().join("blobs");
        for (i, (attempt, _, _)) in a.iter().enumerate() {
            let output = if i == 0 {
                large.clone()
            } else {
                format!("output {i}").into_bytes()
            };
            let input = ResultInput {
                attempt: *attempt,
                outcome: Outcome::Success,
                metrics: Metrics::default(),
                log: format!("log {i}").into_bytes().into(),
                outputs: vec![("o".into(), output.into())],
            };
            store.record_result(input).await.unwrap();
        }
        let large_file = blobs.join(&large_sha[..2]).join(&large_sha);
        assert!(large_file.is_file());
        // A file whose row never committed, and a temp file of a transfer under way.
        let stray = crate::store::sha256_hex(b"stray");
        std::fs::create_dir_all(blobs.join(&stray[..2])).unwrap();
        std::fs::write(blobs.join(&stray[..2]).join(&stray), b"stray").unwrap();
        let under_way = store.stage_blob().unwrap();
        // Nothing is older than the epoch.
        assert_eq!(store.purge(0).await.unwrap(), PurgeReport::default());
        let report = store.purge(now_ms() + 1000).await.unwrap();
        assert_eq!((report.outputs, report.logs, report.blobs), (2, 2, 4));
        assert_eq!((report.stray_files, report.stray_bytes), (1, 5));
        assert!(
            !large_file.exists(),
            "a purged blob's file goes with its row"
        );
        assert!(!blobs.join(&stray[..2]).join(&stray).exists());
        assert_eq!(
            std::fs::read_dir(blobs.join("tmp")).unwrap().count(),
            1,
            "a fresh temp file stays"
        );
        drop(under_way);
        assert!(store.output(ids[0], "o".into()).await.is_err());
        assert!(store.log(ids[0]).await.unwrap().is_empty());
        assert_eq!(
            store.fold(ids[0]).await.unwrap().state,
            crate::model::FoldState::Done,
            "folds themselves stay"
        );

        // A backup is the database and its blob files, beside it.
        store.put_blob(large.clone()).await.unwrap();
        let backups = dir.path().join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        let copy = backups.join("copy.db");
        let report = store.backup_to(copy.clone()).await.unwrap();
        assert!(report.db_bytes > 0);
        assert_eq!(
            (report.blob_files, report.blob_bytes),
            (1, large.len() as u64)
        );
        let other = Store::open(&copy).unwrap();
        assert_eq!(other.fold(ids[1]).await.unwrap().id, ids[1]);
        let copied = backups_blobs_file(&copy, &large_sha);
        assert_eq!(std::fs::read(copied).unwrap(), large);
        assert!(
            store.backup_to(copy).await.is_err(),
            "a backup never overwrites"
        );
    }
}
