//! The Python client's venv, made once under the target directory (`python3 -m venv` +
//! `pip install -e clients/python[test]`, redone when the package's `pyproject.toml` changes);
//! shared by the tests that run Python against a real master. A file lock keeps two tests from
//! building it at once.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "clients/python";

/// The cargo target directory: the binary is `<target>/<profile>/datarun`.
pub fn target_dir() -> PathBuf {
    Path::new(super::BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in <target>/<profile>/")
        .to_path_buf()
}

pub fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's python, with the client installed (editable) and pytest.
pub fn venv() -> PathBuf {
    // Redone when the package moves (the install is editable: it points at this checkout)
    // or its pyproject.toml (dependencies) changes.
    let package = std::fs::canonicalize(PACKAGE).expect("clients/python");
    let want = format!(
        "{}\n{}",
        package.display(),
        std::fs::read_to_string(package.join("pyproject.toml"))
            .expect("clients/python/pyproject.toml")
    );
    let editable = format!("{}[test]", package.display());
    venv_with(
        "py-client-venv",
        &want,
        &["-e", &editable],
        "pip install -e clients/python[test] (needs PyPI)",
    )
}

/// The python of a venv `<target>/<name>` made with `pip install <install>`, made again when
/// `want` (what it is made from) changes.
pub fn venv_with(name: &str, want: &str, install: &[&str], what: &str) -> PathBuf {
    let python3 = super::python3();
    let dir = target_dir().join(name);
    let python = dir.join("bin/python");
    let stamp = dir.join("datarun-venv.stamp");
    let lock = std::fs::File::create(target_dir().join(format!("{name}.lock")))
        .expect("create the venv lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(python3)
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .expect("run python3 -m venv");
    assert!(
        out.status.success(),
        "python3 -m venv failed (on Debian: apt-get install python3-venv):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(install),
        what,
    );
    std::fs::write(&stamp, want).unwrap();
    python
}
