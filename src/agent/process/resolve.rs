//! Finding a fold's program as execvp(3) would, once: the agent resolves it and spawns the
//! absolute path (a vfork-style spawn), and records the same path (provenance).

use super::DEFAULT_PATH;
use crate::agent::recent::Recent;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Programs found along a PATH of absolute directories, by (program, PATH): a stream of folds
/// running the same program looks along PATH once a moment, not once a fold (every entry
/// before the program's own is a failed lookup). What is remembered is checked again on every
/// use, so a program removed or no longer executable is noticed at once; one installed in an
/// earlier directory of PATH is found within [`crate::agent::recent::REMEMBER`].
static FOUND: Recent<(OsString, OsString), PathBuf> = Recent::new();

/// Where `program` is, the way execvp(3) finds it: a name with a slash as it stands (relative
/// to the fold's working directory `cwd`), any other name in the directories of `path` (the
/// fold's own PATH; an empty entry is the working directory), the first regular file there
/// that may be executed. A candidate that exists but may not be executed is skipped, and
/// named in the error if nothing else is found.
pub(crate) fn resolve_program(
    program: &OsStr,
    path: Option<&OsStr>,
    cwd: &Path,
) -> Result<PathBuf, String> {
    let shown = Path::new(program).display();
    if program.is_empty() {
        return Err("the command's program is empty".into());
    }
    if program.as_bytes().contains(&b'/') {
        let full = cwd.join(program);
        return match executable(&full) {
            Ok(()) => Ok(full),
            Err(e) => Err(format!("cannot run {shown:?}: {e}")),
        };
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    // Only a PATH of absolute directories: another one depends on the working directory.
    let key = path
        .as_bytes()
        .split(|&b| b == b':')
        .all(|dir| dir.first() == Some(&b'/'))
        .then(|| (program.to_os_string(), path.to_os_string()));
    if let Some(found) = key.as_ref().and_then(|k| FOUND.get(k)) {
        if executable(&found).is_ok() {
            return Ok(found);
        }
    }
    let mut refused = None;
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(()) => {
                if let Some(key) = key {
                    FOUND.put(key, candidate.clone());
                }
                return Ok(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                refused.get_or_insert((candidate, e));
            }
            Err(_) => {}
        }
    }
    Err(match refused {
        Some((candidate, e)) => format!("cannot run {shown:?}: {e} ({})", candidate.display()),
        None => format!(
            "cannot run {shown:?}: No such file or directory: not found in PATH {}",
            path.to_string_lossy()
        ),
    })
}

/// Ok if `path` is a regular file this process may execute (access(2) with X_OK).
fn executable(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::from(io::ErrorKind::PermissionDenied));
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c_path` is a valid NUL-terminated string; access only reads it.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
