//! The Python client (`clients/python`, issue #6 item 7) tested with pytest against a real
//! master: a docker runner for the fold image, the venv of `common/python.rs`, then
//! `python -m pytest clients/python/tests` with DATARUN_URL, DATARUN_TOKEN and DATARUN_DATA_DIR
//! set. pytest's output is shown; a failure, a skip or a
//! missing python3/venv/Docker fails this test. The RAMP files (`test_ramp_worker.py`, and
//! `test_ramp_dispatcher.py`: ramp-engine 0.10.1's own Dispatcher over DatarunWorker against a
//! throwaway PostgreSQL) run as a test of their own, on a master of their own, so each half
//! stays within the per-test time limit.

mod common;

use common::ml::docker_inventory;
use common::python::venv;
use common::Master;
use std::process::Command;

const RAMP_FILES: [&str; 2] = [
    "clients/python/tests/test_ramp_worker.py",
    "clients/python/tests/test_ramp_dispatcher.py",
];

/// Runs pytest with `args` against a fresh master; every collected test must pass.
fn pytest(args: &[&str]) {
    let python = venv();
    let m = Master::start(Some(&docker_inventory(4)));
    let repo = std::env::current_dir().unwrap();
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-rs"])
        .args(args)
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

#[test]
fn the_python_client_passes_its_pytest_suite_against_a_real_master() {
    let ignore: Vec<String> = RAMP_FILES.iter().map(|f| format!("--ignore={f}")).collect();
    let mut args = vec!["clients/python/tests"];
    args.extend(ignore.iter().map(String::as_str));
    pytest(&args);
}

#[test]
fn ramp_engine_s_dispatcher_and_the_ramp_worker_pass_their_pytest_files() {
    pytest(&RAMP_FILES);
}
