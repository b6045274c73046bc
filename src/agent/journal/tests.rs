//! The journal's durability and recovery, on real files.
use super::test_run as run;
use super::*;
use crate::model::Outcome;

#[test]
fn a_zombie_is_not_alive() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pid_alive(pid) {
        assert!(std::time::Instant::now() < deadline, "`true` never ended");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(exists, "not reaped yet: a zombie, which is not alive");
    child.wait().unwrap();
    assert!(pid_alive(std::process::id()));
}

/// Holds every sync of `j`'s results log until the test sends a token.
fn hold_syncs(j: &Journal) -> std::sync::mpsc::Sender<()> {
    let (token, tokens) = std::sync::mpsc::channel::<()>();
    let tokens = std::sync::Mutex::new(tokens);
    j.results.before_each(move || {
        let _ = tokens.lock().unwrap().recv();
    });
    token
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn results_finishing_together_share_a_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let j = std::sync::Arc::new(Journal::open(tmp.path()).unwrap());
    for attempt in 1..=10 {
        j.begin(&run(attempt)).unwrap();
    }
    let token = hold_syncs(&j);
    // A sync of the log is under way (started before any of the next results was written):
    // each of them must wait for a later one, and one later sync serves them all.
    let first = {
        let j = j.clone();
        std::thread::spawn(move || j.finish(&AttemptReport::bare(1, Outcome::Success)))
    };
    wait_for("the first sync starts", || j.results.state().started == 1);
    let threads: Vec<_> = (2..=9)
        .map(|attempt| {
            let j = j.clone();
            std::thread::spawn(move || j.finish(&AttemptReport::bare(attempt, Outcome::Success)))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    token.send(()).unwrap();
    first.join().unwrap().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        threads.iter().all(|t| !t.is_finished()),
        "no result may be acknowledged by a sync that started before it was written"
    );
    for _ in 0..8 {
        token.send(()).unwrap();
    }
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let syncs = j.results.state().finished;
    assert!((2..=3).contains(&syncs), "9 results took {syncs} syncs");
    for attempt in 1..=9 {
        assert_eq!(j.result(attempt).unwrap().outcome, Outcome::Success);
    }
    // Without a sync under way, a result waits for one of its own.
    j.finish(&AttemptReport::bare(10, Outcome::Success))
        .unwrap();
    assert_eq!(j.results.state().finished, syncs + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_finished_on_tasks_wait_for_their_sync_without_a_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let j = std::sync::Arc::new(Journal::open(tmp.path()).unwrap());
    for attempt in 1..=9 {
        j.begin(&run(attempt)).unwrap();
    }
    // The log is made (and its directory synced) by a first result, on a blocking thread.
    j.finish_async(&AttemptReport::bare(1, Outcome::Success))
        .await
        .unwrap();
    let before = j.results.state().finished;
    let token = hold_syncs(&j);
    let tasks: Vec<_> = (2..=9)
        .map(|attempt| {
            let j = j.clone();
            tokio::spawn(async move {
                j.finish_async(&AttemptReport::bare(attempt, Outcome::Success))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a result is reported only once its sync is done"
    );
    for _ in 0..8 {
        token.send(()).unwrap();
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let syncs = j.results.state().finished - before;
    assert!((1..=2).contains(&syncs), "8 results took {syncs} syncs");
    for attempt in 2..=9 {
        assert_eq!(j.result(attempt).unwrap().outcome, Outcome::Success);
    }
    let log = std::fs::read(j.log_path(std::process::id())).unwrap();
    assert_eq!(
        log.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
        9,
        "every result is in the log"
    );
}

#[test]
fn a_dead_agents_results_log_restores_lost_results() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    for attempt in [1, 2, 3] {
        j.begin(&run(attempt)).unwrap();
    }
    j.finish(&AttemptReport::bare(1, Outcome::Success)).unwrap();
    j.finish(&AttemptReport::bare(2, Outcome::ExitCode { code: 3 }))
        .unwrap();
    // The machine crashed: the renames of result.json never reached the disk, a record
    // being appended was cut short, and the agent's pid is now a dead one's.
    std::fs::remove_file(j.dir(1).join("result.json")).unwrap();
    std::fs::write(j.dir(2).join("result.json"), b"").unwrap();
    let mut log = std::fs::read(j.log_path(std::process::id())).unwrap();
    log.extend_from_slice(b"\n{\"attempt\":3,\"outc");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(j.log_path(dead), &log).unwrap();
    std::fs::remove_file(j.log_path(std::process::id())).unwrap();
    drop(j);

    let j = Journal::open(tmp.path()).unwrap();
    let r = j.recover().unwrap();
    let finished: Vec<_> = r
        .finished
        .iter()
        .map(|f| (f.attempt, f.outcome.clone()))
        .collect();
    assert_eq!(
        finished,
        vec![(1, Outcome::Success), (2, Outcome::ExitCode { code: 3 })]
    );
    assert_eq!(r.orphaned, vec![3], "the cut-short record is no result");
    assert!(!j.log_path(dead).exists(), "a replayed log is deleted");
    assert_eq!(j.result(1).unwrap().outcome, Outcome::Success);
}

#[test]
fn a_long_results_log_starts_again_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    let mut report = AttemptReport::bare(1, Outcome::Success);
    report.log = crate::protocol::LogData::Inline("x".repeat(1 << 20));
    j.begin(&run(1)).unwrap();
    for _ in 0..5 {
        j.finish(&report).unwrap();
    }
    let len = std::fs::metadata(j.log_path(std::process::id()))
        .unwrap()
        .len();
    assert!(len < 2 << 20, "the log was not emptied: {len} bytes");
    assert!(j.result(1).is_some());
}

#[test]
fn a_cut_short_result_is_no_result() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    j.begin(&run(4)).unwrap();
    std::fs::write(j.dir(4).join("result.json"), b"{\"attempt\":4,\"outc").unwrap();
    assert!(j.result(4).is_none());
    let r = j.recover().unwrap();
    assert_eq!(r.orphaned, vec![4], "{r:?}");
}

#[test]
fn recover_sorts_attempts() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    j.begin(&run(1)).unwrap();
    j.finish(&AttemptReport::bare(1, Outcome::Success)).unwrap();
    j.begin(&run(2)).unwrap();
    // Attempt 3 is owned by a live process that is not us (our parent, the test runner's).
    j.begin(&run(3)).unwrap();
    write_atomic(
        &j.dir(3).join("owner"),
        std::os::unix::process::parent_id().to_string().as_bytes(),
        false,
    )
    .unwrap();
    let r = j.recover().unwrap();
    assert_eq!(r.finished.len(), 1);
    assert_eq!(r.finished[0].attempt, 1);
    assert_eq!(
        r.orphaned,
        vec![2],
        "our own pid owning an unfinished attempt means a previous run of us died"
    );
    assert_eq!(r.adopted, vec![(3, std::os::unix::process::parent_id())]);
    j.forget(1).unwrap();
    assert!(!j.exists(1));
}

#[test]
fn fetch_serves_finished_attempts_files_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    let dir = j.begin(&run(5)).unwrap();
    std::fs::create_dir_all(dir.join("output/sub")).unwrap();
    std::fs::write(dir.join("output/sub/a.txt"), b"hello").unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("output/etc")).unwrap();
    let chunk = |file: &str| j.fetch(5, file.to_string(), 1, 3);
    assert!(
        matches!(chunk("output/sub/a.txt"), FromAgent::FetchFailed { message, .. } if message.contains("no result")),
        "nothing is served while the attempt runs"
    );
    j.finish(&AttemptReport::bare(5, Outcome::Success)).unwrap();
    match chunk("output/sub/a.txt") {
        FromAgent::Chunk {
            data, eof, offset, ..
        } => {
            assert_eq!(crate::protocol::unb64(&data).unwrap(), b"ell");
            assert_eq!((offset, eof), (1, false));
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "output/../run.json",
        "run.json",
        "output/etc/passwd",
        "output/missing",
        "/etc/passwd",
    ] {
        assert!(
            matches!(chunk(bad), FromAgent::FetchFailed { .. }),
            "{bad} must not be served"
        );
    }
}

/// Spawns `sleep 30` in a process group of its own, as the process executor does.
fn sleeper() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn an_attempt_is_one_entry_with_its_owner_and_process_group() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    let dir = j.begin(&run(6)).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["input", "output", "run.json"]);
    assert_eq!(j.owner(6), Some(std::process::id()));
    assert_eq!(j.run(6).unwrap().command, ["true"]);
    let mut fold = sleeper();
    note_pgid(&dir, fold.id() as i32).unwrap();
    assert_eq!(
        j.run(6).unwrap().attempt,
        6,
        "the noted group leaves the run readable"
    );
    j.kill_leftovers(6);
    let status = fold.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    // A run.json cut short by a crash is no run and no owner: the attempt is an orphan.
    std::fs::write(dir.join("run.json"), b"{\"owner\":1,\"run\":{\"attem").unwrap();
    assert!(j.run(6).is_none() && j.owner(6).is_none());
    assert_eq!(j.recover().unwrap().orphaned, vec![6]);
}

#[test]
fn an_entry_journaled_by_an_older_agent_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    // Before: the bare run in run.json, the owner and the process group in files of their own.
    let dir = j.dir(7);
    std::fs::create_dir_all(dir.join("output")).unwrap();
    std::fs::write(dir.join("run.json"), serde_json::to_vec(&run(7)).unwrap()).unwrap();
    let parent = std::os::unix::process::parent_id();
    std::fs::write(dir.join("owner"), parent.to_string()).unwrap();
    let mut fold = sleeper();
    std::fs::write(dir.join("pgid"), fold.id().to_string()).unwrap();
    assert_eq!(j.run(7).unwrap().attempt, 7);
    assert_eq!(j.owner(7), Some(parent));
    assert_eq!(j.recover().unwrap().adopted, vec![(7, parent)]);
    j.kill_leftovers(7);
    // Re-adopted here (a container): this process owns it now, not the old owner file's.
    j.begin(&run(7)).unwrap();
    assert_eq!(j.owner(7), Some(std::process::id()));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(fold.wait().unwrap().signal(), Some(libc::SIGKILL));
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn an_acknowledged_clean_directory_is_the_next_attempts() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    let first = j.begin(&run(1)).unwrap();
    j.finish(&AttemptReport::bare(1, Outcome::Success)).unwrap();
    let (dir_ino, run_ino) = (inode(&first), inode(&first.join("run.json")));
    j.forget(1).unwrap();
    assert!(!first.exists() && !j.exists(1) && j.result(1).is_none());
    let spares = tmp
        .path()
        .join("spare")
        .join(std::process::id().to_string());
    assert_eq!(std::fs::read_dir(&spares).unwrap().count(), 1, "kept");
    // Blanked, not cut to nothing: each file keeps its block (freeing it costs a discard).
    use std::os::unix::fs::MetadataExt;
    let kept = std::fs::read_dir(&spares)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in ["run.json", "result.json"] {
        let meta = std::fs::metadata(kept.join(f)).unwrap();
        assert_eq!(std::fs::read(kept.join(f)).unwrap(), b"\n", "{f}");
        assert!(meta.blocks() > 0, "{f} lost its block");
    }
    // The next attempt gets the same directory and files, blank: no result, no old run.
    let second = j.begin(&run(2)).unwrap();
    assert_eq!(std::fs::read_dir(&spares).unwrap().count(), 0, "taken");
    assert_eq!(
        (inode(&second), inode(&second.join("run.json"))),
        (dir_ino, run_ino)
    );
    assert!(j.exists(2));
    assert_eq!(j.run(2).unwrap().attempt, 2);
    assert!(j.result(2).is_none(), "the old result is gone");
    assert!(
        matches!(j.fetch(2, "log".into(), 0, 10), FromAgent::FetchFailed { message, .. } if message.contains("no result")),
        "a blank result.json is no result"
    );
    assert_eq!(
        j.recover().unwrap().orphaned,
        vec![2],
        "begun, no result, owner is us"
    );
    j.finish(&AttemptReport::bare(2, Outcome::ExitCode { code: 4 }))
        .unwrap();
    assert_eq!(j.result(2).unwrap().outcome, Outcome::ExitCode { code: 4 });
}

#[test]
fn a_directory_a_fold_left_something_in_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path()).unwrap();
    // What a fold may leave: an output, a file beside the journal's, a link, a changed mode.
    let leave: [&dyn Fn(&std::path::Path); 4] = [
        &|d| std::fs::write(d.join("output/model.pkl"), b"x").unwrap(),
        &|d| std::fs::write(d.join(".bash_history"), b"x").unwrap(),
        &|d| {
            std::fs::remove_dir(d.join("input")).unwrap();
            std::os::unix::fs::symlink("/tmp", d.join("input")).unwrap();
        },
        &|d| {
            use std::os::unix::fs::PermissionsExt;
            let all = std::fs::Permissions::from_mode(0o777);
            std::fs::set_permissions(d.join("output"), all).unwrap();
        },
    ];
    for (i, leave) in leave.iter().enumerate() {
        let attempt = 10 + i as AttemptId;
        let dir = j.begin(&run(attempt)).unwrap();
        leave(&dir);
        j.finish(&AttemptReport::bare(attempt, Outcome::Success))
            .unwrap();
        j.forget(attempt).unwrap();
        assert!(!dir.exists());
        let spares = tmp
            .path()
            .join("spare")
            .join(std::process::id().to_string());
        let kept = std::fs::read_dir(&spares).unwrap().count();
        assert_eq!(kept, 0, "case {i}: not kept");
        let next = j.begin(&run(attempt + 100)).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&next)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["input", "output", "run.json"], "case {i}");
        j.finish(&AttemptReport::bare(attempt + 100, Outcome::Success))
            .unwrap();
        std::fs::remove_dir_all(&next).unwrap(); // not kept for the next case
    }
}

#[test]
fn a_dead_agents_spares_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let theirs = tmp.path().join("spare").join(dead.to_string()).join("5");
    std::fs::create_dir_all(theirs.join("output")).unwrap();
    let live = std::os::unix::process::parent_id();
    let kept = tmp.path().join("spare").join(live.to_string());
    std::fs::create_dir_all(&kept).unwrap();
    let _j = Journal::open(tmp.path()).unwrap();
    assert!(
        !theirs.parent().unwrap().exists(),
        "a dead process's spares go"
    );
    assert!(kept.exists(), "a live process's stay");
}
