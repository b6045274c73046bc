//! The attempt's directories as the container user must see them: output writable by it,
//! input readable.

use super::*;

/// The output directory becomes writable by the container user; the inputs readable by it.
/// Blocking.
pub(super) fn prepare_dirs(req: &ExecRequest, user: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let out = &req.output_dir;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let handed = match spec::numeric_user(user) {
        Some((uid, gid)) if root => std::os::unix::fs::chown(out, Some(uid), Some(gid)),
        _ => std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o777)),
    };
    handed.map_err(|e| {
        format!(
            "cannot let the container user {user} write to {}: {e}",
            out.display()
        )
    })?;
    make_readable(&req.input_dir, 0).map_err(|e| {
        format!(
            "cannot make the inputs in {} readable: {e}",
            req.input_dir.display()
        )
    })
}

/// Adds read (and, for directories, search) permission for others; symlinks are left alone.
pub(super) fn make_readable(path: &Path, depth: usize) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let extra = if meta.is_dir() {
        0o005
    } else if meta.is_file() {
        0o004
    } else {
        return Ok(());
    };
    let mode = meta.permissions().mode();
    if mode & extra != extra {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | extra))?;
    }
    if meta.is_dir() && depth < 64 {
        for entry in std::fs::read_dir(path)? {
            make_readable(&entry?.path(), depth + 1)?;
        }
    }
    Ok(())
}
