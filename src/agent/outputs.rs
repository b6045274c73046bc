//! The fold's outputs: the regular files under its output directory.

use crate::model::check_file_name;
use std::path::Path;

#[derive(Debug, Default)]
pub struct Outputs {
    /// Relative names ("a.csv", "sub/b.csv"), sorted.
    pub names: Vec<String>,
    pub total_bytes: u64,
    /// Entries left out: symlinks, special files, names that are not UTF-8 or fail
    /// `check_file_name`.
    pub skipped: u64,
}

/// Longest relative name worth looking at (`check_file_name` rejects longer ones); it also
/// bounds how deep the walk goes.
const MAX_NAME: usize = 255;

/// `collect` for an attempt, off the runtime's threads; what had to be skipped is logged.
pub async fn collect_for(req: &super::exec::ExecRequest) -> Outputs {
    let dir = req.output_dir.clone();
    let outputs = tokio::task::spawn_blocking(move || collect(&dir))
        .await
        .unwrap_or_default();
    if outputs.skipped > 0 {
        tracing::warn!(
            "attempt {}: {} output entries skipped (links, special files or bad names)",
            req.attempt,
            outputs.skipped
        );
    }
    outputs
}

pub fn collect(dir: &Path) -> Outputs {
    let mut outputs = Outputs::default();
    walk(dir, "", &mut outputs);
    outputs.names.sort();
    outputs
}

fn walk(dir: &Path, prefix: &str, outputs: &mut Outputs) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let rel = match name.to_str() {
            Some(name) if prefix.is_empty() => name.to_string(),
            Some(name) => format!("{prefix}/{name}"),
            None => String::new(),
        };
        // file_type() does not follow symlinks, so a link is neither a dir nor a file here.
        match entry.file_type() {
            Ok(kind) if kind.is_dir() && !rel.is_empty() && rel.len() < MAX_NAME => {
                walk(&entry.path(), &rel, outputs)
            }
            Ok(kind) if kind.is_file() && check_file_name(&rel).is_ok() => {
                outputs.total_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                outputs.names.push(rel);
            }
            _ => outputs.skipped += 1,
        }
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
    }

    #[test]
    fn a_missing_directory_has_no_outputs() {
        let out = collect(Path::new("/nonexistent/datarun/output"));
        assert!(out.names.is_empty());
        assert_eq!(out.total_bytes, 0);
    }
}
