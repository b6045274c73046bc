//! Scheduled maintenance (backups with rotation, purges, health checks) in a real master.

mod common;

use common::{sh, Master, BIN};
use std::time::{Duration, Instant};

#[test]
fn backups_rotate_purges_free_old_outputs_and_runs_are_listed() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("master.toml");
    std::fs::write(
        &cfg,
        "[maintenance.health_check]\nschedule = \"* * * * * *\"\n\
         [maintenance.backup]\nschedule = \"* * * * * *\"\ndir = \"backups\"\nkeep = 2\n\
         [maintenance.purge]\nschedule = \"* * * * * *\"\nretention = \"3s\"\n",
    )
    .unwrap();
    let m = Master::start_with(None, &["--config", cfg.to_str().unwrap()]);
    // A large output too: its blob is a file, which backups carry beside the database.
    let ids = m.submit(vec![sh(
        "echo kept > $DATARUN_OUTPUT/out; head -c 100000 /dev/zero > $DATARUN_OUTPUT/big",
    )]);
    m.wait_all(&ids, Duration::from_secs(20));
    let id = ids[0].to_string();
    assert_eq!(
        m.cli_ok(&["fold", "output", &id, "out"]).trim(),
        "kept",
        "fresh outputs survive the purge"
    );

    // After the retention period the output is purged; the fold itself stays.
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.cli(&["fold", "output", &id, "out"]).status.success() {
        assert!(Instant::now() < deadline, "the output was never purged");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(m.fold(ids[0])["fold"]["state"], "done");

    // Backups: at most `keep` files, each a database holding the fold; blob files sit in a
    // `.blobs` directory beside their database and go with it.
    let (backups, blobs): (Vec<_>, Vec<_>) = std::fs::read_dir(m.data_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .partition(|p| p.extension().is_some_and(|e| e == "db"));
    assert!((1..=2).contains(&backups.len()), "{backups:?}");
    for dir in &blobs {
        assert!(dir.extension().is_some_and(|e| e == "blobs"), "{dir:?}");
        assert!(
            dir.with_extension("db").exists() || !dir.exists(),
            "{dir:?} outlived its database"
        );
    }
    let bytes = std::fs::read(&backups[0]).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"));

    let text = m.cli_ok(&["queue", "status", "--maintenance"]);
    // Three or more backups ran (one a second), so rotation has removed at least one.
    for needle in [
        "health_check",
        "backup",
        "purge",
        "1 runners ready",
        "removed 2 outputs",
        "removed 1 old backups",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn a_bad_config_stops_serve_with_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("master.toml");
    std::fs::write(
        &cfg,
        "[maintenance.backup]\nschedule = \"0 3 * *\"\ndir = \"b\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("master.toml")
            && err.contains("maintenance.backup.schedule")
            && err.contains("4 fields"),
        "{err}"
    );
    assert!(!dir.path().join("data/datarun.db").exists());
}
