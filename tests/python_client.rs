//! The Python client (`clients/python`, issue #6 item 7) tested with pytest against a real
//! master: a docker runner for the fold image, the venv of `common/python.rs`, then
//! `python -m pytest clients/python/tests` with DATARUN_URL, DATARUN_TOKEN and DATARUN_DATA_DIR
//! set. pytest's output is shown; a failure, a skip or a
//! missing python3/venv/Docker fails this test.

mod common;

use common::ml::docker_inventory;
use common::python::venv;
use common::Master;
use std::process::Command;

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
