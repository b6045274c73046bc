//! The Python client (`clients/python`, issue #6 item 7) tested with pytest against a real
//! master: a docker runner for the fold image, a venv made once under the target directory
//! (`python3 -m venv` + `pip install -e clients/python[test]`, redone when the package's
//! `pyproject.toml` changes), then `python -m pytest clients/python/tests` with DATARUN_URL,
//! DATARUN_TOKEN and DATARUN_DATA_DIR set. pytest's output is shown; a failure, a skip or a
//! missing python3/venv/Docker fails this test.

mod common;

use common::ml::docker_inventory;
use common::Master;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "clients/python";

/// The cargo target directory: the binary is `<target>/<profile>/datarun`.
fn target_dir() -> PathBuf {
    Path::new(common::BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in <target>/<profile>/")
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) {
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
fn venv() -> PathBuf {
    let python3 = common::python3();
    let dir = target_dir().join("py-client-venv");
    let python = dir.join("bin/python");
    let stamp = dir.join("datarun-client.stamp");
    // Redone when the package moves (the install is editable: it points at this checkout)
    // or its pyproject.toml (dependencies) changes.
    let package = std::fs::canonicalize(PACKAGE).expect("clients/python");
    let want = format!(
        "{}\n{}",
        package.display(),
        std::fs::read_to_string(package.join("pyproject.toml"))
            .expect("clients/python/pyproject.toml")
    );
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
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
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            &format!("{}[test]", package.display()),
        ]),
        "pip install -e clients/python[test] (needs PyPI)",
    );
    std::fs::write(&stamp, want).unwrap();
    python
}

#[test]
fn the_python_client_passes_its_pytest_suite_against_a_real_master() {
    let python = venv();
    let m = Master::start(Some(&docker_inventory(4)));
    let repo = std::env::current_dir().unwrap();
    let out = Command::new(&python)
        .args(["-m", "pytest", "clients/python/tests", "-q", "-rs"])
        .args(["-p", "no:cacheprovider", "-s"])
        .env("DATARUN_URL", &m.url)
        .env("DATARUN_TOKEN", &m.token)
        .env("DATARUN_DATA_DIR", m.data_dir())
        .env("DATARUN_REPO", &repo)
        .env_remove("DATARUN_SERVER")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("pytest:\n{stdout}{stderr}");
    assert!(out.status.success(), "pytest failed: see its output above");
    let summary = stdout.lines().last().unwrap_or("");
    assert!(
        summary.contains("passed") && !summary.contains("skipped") && !summary.contains("xfail"),
        "every test must run and pass: {summary}"
    );
}
