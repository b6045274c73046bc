//! The fold's outputs: the regular files under its output directory, and the output limit,
//! enforced on the runner while the fold runs. Both executors hold a [`Guard`]: it measures the
//! directory every [`CHECK_EVERY`] (bounded work: the walk stops at the first byte over the
//! limit and after [`MAX_ENTRIES`] entries), the executor kills the fold as soon as it is over,
//! and [`Guard::settle`] looks once more at the end. Over the limit, the outputs are deleted
//! and none is reported, so nothing of them crosses the wire (the log still does).

use super::exec::ExecRequest;
use crate::model::{check_file_name, AttemptId, Outcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a running fold's outputs are measured.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The most entries (files, directories, and what is skipped) an output directory may hold.
pub const MAX_ENTRIES: u64 = crate::protocol::MAX_OUTPUTS;

/// Longest relative name worth looking at (`check_file_name` rejects longer ones); it also
/// bounds how deep the walk goes.
const MAX_NAME: usize = 255;

/// Outputs over the limit: what was found, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Over {
    /// Bytes found (when the walk stopped: at least this many).
    pub bytes: u64,
    pub limit: u64,
    /// Set when the directory held more than this many entries.
    pub entries: Option<u64>,
}

impl Over {
    pub fn outcome(self) -> Outcome {
        Outcome::OutputLimit {
            bytes: self.bytes,
            limit: self.limit,
            entries: self.entries,
        }
    }
}

#[derive(Debug, Default)]
pub struct Outputs {
    /// Relative names ("a.csv", "sub/b.csv"), sorted.
    pub names: Vec<String>,
    pub total_bytes: u64,
    /// Entries left out: symlinks, special files, names that are not UTF-8 or fail
    /// `check_file_name`.
    pub skipped: u64,
    /// Entries seen (files, directories and skipped ones).
    pub entries: u64,
    /// Set when the walk stopped because the outputs are over the limit.
    pub over: Option<Over>,
}

/// Lists the outputs under `dir`, stopping as soon as they are over `limit` bytes or
/// [`MAX_ENTRIES`] entries.
pub fn scan(dir: &Path, limit: u64) -> Outputs {
    let mut outputs = Outputs::default();
    walk(dir, "", limit, &mut outputs);
    outputs.names.sort();
    outputs
}

/// [`scan`] with no byte limit (the entry limit still holds).
#[cfg(test)]
pub fn collect(dir: &Path) -> Outputs {
    scan(dir, u64::MAX)
}

fn walk(dir: &Path, prefix: &str, limit: u64, outputs: &mut Outputs) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if outputs.over.is_some() {
            return;
        }
        outputs.entries += 1;
        if outputs.entries > MAX_ENTRIES {
            outputs.over = Some(Over {
                bytes: outputs.total_bytes,
                limit,
                entries: Some(MAX_ENTRIES),
            });
            return;
        }
        let name = entry.file_name();
        let rel = match name.to_str() {
            Some(name) if prefix.is_empty() => name.to_string(),
            Some(name) => format!("{prefix}/{name}"),
            None => String::new(),
        };
        // file_type() does not follow symlinks, so a link is neither a dir nor a file here.
        match entry.file_type() {
            Ok(kind) if kind.is_dir() && !rel.is_empty() && rel.len() < MAX_NAME => {
                walk(&entry.path(), &rel, limit, outputs)
            }
            Ok(kind) if kind.is_file() && check_file_name(&rel).is_ok() => {
                outputs.total_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                outputs.names.push(rel);
                if outputs.total_bytes > limit {
                    outputs.over = Some(Over {
                        bytes: outputs.total_bytes,
                        limit,
                        entries: None,
                    });
                }
            }
            _ => outputs.skipped += 1,
        }
    }
}

/// The output limit of one attempt.
pub struct Guard {
    attempt: AttemptId,
    dir: PathBuf,
    limit: u64,
    /// Set once the outputs were found over the limit while the fold ran.
    over: Option<Over>,
}

impl Guard {
    pub fn new(req: &ExecRequest) -> Guard {
        Guard {
            attempt: req.attempt,
            dir: req.output_dir.clone(),
            limit: req.output_limit,
            over: None,
        }
    }

    /// Measures the outputs now (off the runtime's threads); Some the first time they are
    /// over the limit: the fold must be killed.
    pub async fn check(&mut self) -> Option<Over> {
        if self.over.is_some() {
            return None;
        }
        let (dir, limit) = (self.dir.clone(), self.limit);
        let over = tokio::task::spawn_blocking(move || scan(&dir, limit).over)
            .await
            .ok()
            .flatten()?;
        tracing::info!("attempt {}: {}; killing it", self.attempt, over.outcome());
        self.over = Some(over);
        Some(over)
    }

    /// The outcome and outputs of the ended fold. Over the limit (now or while it ran) the
    /// outputs are deleted and none is reported; a success becomes `OutputLimit`, another
    /// failure keeps its outcome.
    pub async fn settle(self, outcome: Outcome) -> (Outcome, Vec<String>) {
        let (dir, limit) = (self.dir.clone(), self.limit);
        let found = match self.over {
            Some(over) => Outputs {
                over: Some(over),
                ..Outputs::default()
            },
            // An empty directory is one read, here: no hand-off to a blocking thread (most
            // trivial folds write nothing).
            None if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) => {
                Outputs::default()
            }
            None => tokio::task::spawn_blocking(move || scan(&dir, limit))
                .await
                .unwrap_or_default(),
        };
        if found.skipped > 0 {
            tracing::warn!(
                "attempt {}: {} output entries skipped (links, special files or bad names)",
                self.attempt,
                found.skipped
            );
        }
        let Some(over) = found.over else {
            return (outcome, found.names);
        };
        let dir = self.dir.clone();
        let _ = tokio::task::spawn_blocking(move || clear(&dir)).await;
        let outcome = match outcome {
            Outcome::Success => over.outcome(),
            other => {
                if !matches!(other, Outcome::OutputLimit { .. }) {
                    tracing::warn!(
                        "attempt {}: ended {other}, and its outputs were dropped: {}",
                        self.attempt,
                        over.outcome()
                    );
                }
                other
            }
        };
        (outcome, Vec::new())
    }
}

/// Deletes what the fold left in its output directory (best effort: what the agent may not
/// delete goes with the attempt's directory).
fn clear(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_regular_files_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("b.csv"), "12345").unwrap();
        std::fs::write(root.join("sub/deeper/a.txt"), "xy").unwrap();
        std::fs::write(root.join("bad\nname"), "z").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("dirlink")).unwrap();
        let out = collect(root);
        assert_eq!(out.names, ["b.csv", "sub/deeper/a.txt"]);
        assert_eq!(out.total_bytes, 7);
        assert_eq!(out.skipped, 3);
        assert_eq!(out.over, None);
    }

    #[test]
    fn a_missing_directory_has_no_outputs() {
        let out = collect(Path::new("/nonexistent/datarun/output"));
        assert!(out.names.is_empty());
        assert_eq!(out.total_bytes, 0);
    }

    #[test]
    fn the_walk_stops_over_the_limit_in_bytes_or_entries() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(dir.path().join(format!("f{i}")), [0u8; 100]).unwrap();
        }
        let out = scan(dir.path(), 250);
        let over = out.over.expect("over 250 bytes");
        assert_eq!((over.bytes, over.limit, over.entries), (300, 250, None));
        assert_eq!(
            out.names.len(),
            3,
            "the walk stopped at the first file over"
        );
        assert_eq!(scan(dir.path(), 1000).over, None);

        let many = tempfile::tempdir().unwrap();
        for i in 0..=MAX_ENTRIES {
            std::fs::create_dir(many.path().join(format!("d{i}"))).unwrap();
        }
        let out = scan(many.path(), u64::MAX);
        assert_eq!(out.over.unwrap().entries, Some(MAX_ENTRIES));
        assert_eq!(out.entries, MAX_ENTRIES + 1);
        assert_eq!(
            out.over.unwrap().outcome().to_string(),
            "outputs too large: more than 1000 files and directories, over the limit of 1000"
        );
    }

    #[tokio::test]
    async fn settle_drops_outputs_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("sub/big"), vec![1u8; 3000]).unwrap();
        let req = ExecRequest {
            attempt: 1,
            fold: 1,
            runner: "r".into(),
            image: None,
            command: vec![],
            env: Default::default(),
            work_dir: dir.path().into(),
            input_dir: dir.path().join("input"),
            output_dir: out.clone(),
            memory_limit: None,
            millicpus: 1000,
            soft_limit: None,
            hard_limit: None,
            gpus: vec![],
            log_limit: 100,
            output_limit: 2048,
        };
        let (outcome, names) = Guard::new(&req).settle(Outcome::ExitCode { code: 3 }).await;
        assert_eq!(
            outcome,
            Outcome::ExitCode { code: 3 },
            "a failure keeps its outcome"
        );
        assert!(names.is_empty());
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "deleted");

        std::fs::write(out.join("big"), vec![1u8; 3000]).unwrap();
        let mut guard = Guard::new(&req);
        let over = guard.check().await.expect("over the limit");
        assert_eq!(guard.check().await, None, "reported once");
        let (outcome, names) = guard.settle(over.outcome()).await;
        assert_eq!(
            outcome.to_string(),
            "outputs too large: 2.9K (3000 bytes) over the limit of 2K"
        );
        assert!(names.is_empty());

        std::fs::write(out.join("small"), b"ok").unwrap();
        let (outcome, names) = Guard::new(&req).settle(Outcome::Success).await;
        assert_eq!(
            (outcome, names),
            (Outcome::Success, vec!["small".to_string()])
        );
    }
}
