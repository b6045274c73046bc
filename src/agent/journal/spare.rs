//! Spare attempt directories. A trivial fold's attempt costs the kernel more in creating and
//! deleting its directory, `input/`, `output/`, `run.json` and `result.json` than in running
//! it (on ext4 without a journal each new inode is looked for past the recently deleted
//! ones). So an acknowledged attempt's directory that holds nothing but those five, empty and
//! as `begin` made them, is kept instead of deleted: renamed out of `attempts/` (which is
//! what forgets the attempt), its two files blanked (cut to one newline, [`BLANK`], which keeps
//! their blocks), and handed to the next `begin`, which renames it in and writes `run.json` over
//! the same inode and block.
//!
//! Spares live in `<state>/spare/<pid>/` (one directory per agent process, so that processes
//! sharing a state dir never hand out the same one); a new process removes those of dead
//! processes. A blank `run.json` is no run and a blank `result.json` no result (the journal
//! reads both that way), so a spare renamed in is a begun attempt only once its `run.json` is
//! written.

use super::{pid_alive, BLANK, RESULT_FILE, RUN_FILE};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// At most this many spares per agent process.
const KEEP: usize = 64;

pub(super) struct Spares {
    /// This process's spare directory.
    root: PathBuf,
    /// The spares ready to be handed out.
    ready: Mutex<Vec<PathBuf>>,
    /// The mode a directory is made with here (`begin`'s `input/` and `output/`).
    dir_mode: u32,
    uid: u32,
}

impl Spares {
    /// This process's spares under `state/spare/`, after removing dead processes' ones.
    pub(super) fn open(state: &Path) -> std::io::Result<Spares> {
        let all = state.join("spare");
        std::fs::create_dir_all(&all)?;
        for entry in std::fs::read_dir(&all)?.flatten() {
            let dead = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_none_or(|pid| pid != std::process::id() && !pid_alive(pid));
            if dead {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let root = all.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&root); // a dead process's with our pid
        std::fs::create_dir(&root)?;
        let meta = std::fs::metadata(&root)?;
        Ok(Spares {
            root,
            ready: Mutex::new(Vec::new()),
            dir_mode: meta.permissions().mode() & 0o7777,
            uid: meta.uid(),
        })
    }

    /// Moves a spare to `dir` (which must not exist); false when there is none to move.
    pub(super) fn take(&self, dir: &Path) -> bool {
        let Some(spare) = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            return false;
        };
        if std::fs::rename(&spare, dir).is_ok() {
            return true;
        }
        let _ = std::fs::remove_dir_all(&spare);
        false
    }

    /// Keeps the acknowledged attempt directory `dir` as a spare if it is as `begin` and
    /// `finish` left it; true when it was taken out of `attempts/` that way.
    pub(super) fn keep(&self, dir: &Path, name: &str) -> bool {
        if self.ready.lock().unwrap_or_else(|e| e.into_inner()).len() >= KEEP || !self.clean(dir) {
            return false;
        }
        let spare = self.root.join(name);
        if std::fs::rename(dir, &spare).is_err() {
            return false;
        }
        let emptied = [RUN_FILE, RESULT_FILE]
            .iter()
            .all(|f| super::write_in_place(&spare.join(f), BLANK).is_ok());
        if emptied {
            self.ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(spare);
        } else {
            let _ = std::fs::remove_dir_all(&spare);
        }
        true
    }

    /// Whether `dir` holds exactly `input/` and `output/`, both empty, real directories of
    /// this user with the mode they were made with, and `run.json` and `result.json`, regular
    /// files of one link each: nothing a fold left, changed or pointed elsewhere.
    fn clean(&self, dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut seen = 0;
        for entry in entries {
            let Ok(entry) = entry else { return false };
            let Ok(meta) = entry.metadata() else {
                return false; // not followed: a link is what it is
            };
            let ok = match entry.file_name().to_str() {
                Some("input" | "output") => {
                    meta.is_dir()
                        && meta.uid() == self.uid
                        && meta.permissions().mode() & 0o7777 == self.dir_mode
                        && std::fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_none())
                }
                Some(RUN_FILE | RESULT_FILE) => meta.is_file() && meta.nlink() == 1,
                _ => false,
            };
            if !ok {
                return false;
            }
            seen += 1;
        }
        seen == 4
    }
}
