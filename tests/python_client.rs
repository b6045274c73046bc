//! The Python client (`clients/python`, issue #6 item 7) tested with pytest against a real
//! master: a docker runner for the fold image, the venv of `common/python.rs`, then
//! `python -m pytest clients/python/tests` with DATARUN_URL, DATARUN_TOKEN and DATARUN_DATA_DIR
//! set. pytest's output is shown; a failure, a skip or a
//! missing python3/venv/Docker fails this test. The RAMP files (`test_ramp_worker.py`, and
//! `test_ramp_dispatcher.py`: ramp-engine 0.10.1's own Dispatcher over DatarunWorker against a
//! throwaway PostgreSQL) run as a test of their own, on a master of their own, so each half
//! stays within the per-test time limit. The package is also checked with `mypy --strict`, and
//! every `/api/v1` route of the master's router (from its OpenAPI document) must have its
//! client method (`datarun_client.client.ROUTES`).

mod common;

use common::ml::docker_inventory;
use common::python::venv;
use common::Master;
use std::collections::BTreeSet;
use std::process::Command;

const RAMP_FILES: [&str; 2] = [
    "clients/python/tests/test_ramp_worker.py",
    "clients/python/tests/test_ramp_dispatcher.py",
];

/// Problem datasets (a script's `prepare_data` run as a fold, then submissions): a test of
/// their own, so the main one stays well within the per-test time limit on a loaded machine.
const PROBLEM_FILES: [&str; 2] = [
    "clients/python/tests/test_runapp_problem.py",
    "clients/python/tests/test_text_problem.py",
];

/// The typed client's methods for every route, webhooks included: a test of its own (on a
/// master that lets webhooks call loopback), so each stays within the per-test time limit.
const NATIVE_API_FILE: &str = "clients/python/tests/test_native_api.py";

/// Runs pytest with `args` against a fresh master (started with `serve_args`); every
/// collected test must pass.
fn pytest(args: &[&str], serve_args: &[&str]) {
    let python = venv();
    let m = Master::start_with(Some(&docker_inventory(4)), serve_args);
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
    // Absolute: conftest.py changes directory while pytest collects, and a relative
    // `--ignore` is then matched against the wrong directory (the RAMP files ran here too).
    let repo = std::env::current_dir().unwrap();
    let ignore: Vec<String> = RAMP_FILES
        .iter()
        .chain(&PROBLEM_FILES)
        .chain([&NATIVE_API_FILE])
        .map(|f| format!("--ignore={}", repo.join(f).display()))
        .collect();
    let mut args = vec!["clients/python/tests"];
    args.extend(ignore.iter().map(String::as_str));
    pytest(&args, &[]);
}

#[test]
fn ramp_engine_s_dispatcher_and_the_ramp_worker_pass_their_pytest_files() {
    pytest(&RAMP_FILES, &[]);
}

#[test]
fn the_python_client_s_problem_dataset_files_pass() {
    pytest(&PROBLEM_FILES, &[]);
}

#[test]
fn the_typed_client_s_route_methods_and_webhooks_pass_against_a_real_master() {
    // The webhook test's receiver listens on loopback.
    pytest(
        &[NATIVE_API_FILE],
        &[
            "--webhook-allow",
            "127.0.0.0/8",
            "--webhook-backoff",
            "200ms",
        ],
    );
}

#[test]
fn the_python_client_passes_mypy_strict() {
    let python = venv();
    let out = Command::new(&python)
        .args(["-m", "mypy", "--strict", "datarun_client"])
        .current_dir("clients/python")
        .output()
        .expect("run mypy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("mypy: {text}");
    assert!(
        out.status.success() && text.contains("Success: no issues found"),
        "mypy --strict failed: {text}"
    );
}

/// The `(METHOD, /path)` pairs of the `/api/v1` router, from a real master's OpenAPI document
/// (`tests/openapi.rs` proves it names every route of the router, with its methods, and no
/// other); a rest-of-path parameter is written `{*name}` as in the router.
fn api_routes() -> BTreeSet<(String, String)> {
    let m = Master::start(None);
    let doc: serde_json::Value = reqwest::blocking::get(format!("{}/api/v1/openapi.json", m.url))
        .unwrap()
        .json()
        .unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("the document's paths") {
        let path = path.strip_prefix("/api/v1").expect("an /api/v1 path");
        // Only a file name ends a path (`outputs/{name}`, `files/{name}`): the rest of it.
        let path = match path.strip_suffix("/{name}") {
            Some(head) => format!("{head}/{{*name}}"),
            None => path.to_string(),
        };
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn every_api_route_has_a_client_method() {
    let routes = api_routes();
    assert!(
        routes.len() > 40,
        "the parse found too few routes: {routes:?}"
    );
    assert!(routes.contains(&("GET".into(), "/health".into())));
    assert!(routes.contains(&("DELETE".into(), "/datasets/{id}".into())));
    let python = venv();
    let out = Command::new(&python)
        .args([
            "-c",
            "import json; from datarun_client.client import ROUTES; print(json.dumps(sorted([m, p, n] for (m, p), n in ROUTES.items())))",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<(String, String, String)> = serde_json::from_slice(&out.stdout).unwrap();
    let client: BTreeSet<(String, String)> = listed
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let missing: Vec<_> = routes.difference(&client).collect();
    let stale: Vec<_> = client.difference(&routes).collect();
    assert!(
        missing.is_empty(),
        "routes without a client method: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "client methods for routes the master lacks: {stale:?}"
    );
}
