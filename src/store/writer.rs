//! The store's writer thread: the one read-write connection, the jobs it runs in groups (one
//! fsync each) and in which order (`Lanes`), and the checkpointer beside it (see `Store`).

use super::events;
use rusqlite::Connection;

/// A job for the writer: runs on the connection and returns how to answer its caller, which
/// happens only once the job's changes are durable (see `writer`).
pub(super) type Job = Box<dyn FnOnce(&mut Connection) -> Reply + Send>;
pub(super) type Reply = Box<dyn FnOnce() + Send>;

/// A job on its way to the writer, with how it is treated there.
pub(super) struct Queued {
    pub(super) durability: Durability,
    pub(super) urgency: Urgency,
    pub(super) lane: Lane,
    pub(super) job: Job,
    /// When it was queued (the writer's timing log of urgent jobs).
    pub(super) queued_at: std::time::Instant,
}

/// How soon the writer takes a job (`Lanes`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Urgency {
    /// In its lane's turn.
    InTurn,
    /// Before every job that is not urgent; its group ends as soon as no urgent job waits.
    First,
    /// `First` when other jobs wait as the writer takes it in, else `InTurn`. The writer
    /// decides, taking jobs in the order they were queued, so every job queued before it and
    /// not yet started counts (`Store::assign_behind`).
    FirstIfJobsWait,
}

/// Whose job it is, for the writer's order (`Lanes`): each caller's jobs run in the order it
/// queued them, and neither waits behind more than one job of the other at a time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Lane {
    /// The master's own jobs (`Store::for_master`): result recordings, losses, runner rows.
    /// They keep one order among themselves: a loss queued after a result chunk of the same
    /// attempt must not overtake it.
    Master,
    /// Everyone else's: the API's submits and changes, the workflow, the CLI.
    Others,
}

/// How the writer treats a job's changes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// On disk before the caller hears back.
    Durable,
    /// May be lost in a crash of the machine (not of the process): what an agent reports
    /// again on reconnect anyway.
    Lazy,
}

/// Jobs the writer takes in one group, at most.
const GROUP: usize = 256;
/// How long the writer runs one group's jobs, at most, before it makes them durable and
/// answers: every caller of a group waits for all of it, so 256 result chunks of ~10 ms each
/// would hold a submit's answer (and the master's next look at it) for seconds.
pub(super) const GROUP_TIME: std::time::Duration = std::time::Duration::from_millis(20);
/// How often the checkpointer (`checkpointer`) copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// The writer's loop: takes the jobs that wait (a group), runs each (its own transaction,
/// `synchronous=NORMAL`), makes the group's changes durable with one fsync when a durable job
/// changed anything, publishes the newest event's id when any job changed anything (the
/// event feed's change signal), then answers every caller of the group. Urgent jobs run before
/// the others waiting, and a group with one ends once no urgent job waits.
pub(super) fn writer(
    mut conn: Connection,
    rx: std::sync::mpsc::Receiver<Queued>,
    changed: tokio::sync::watch::Sender<i64>,
) {
    let mut replies: Vec<Reply> = Vec::with_capacity(GROUP);
    let mut lanes = Lanes::default();
    loop {
        if lanes.is_empty() {
            match rx.recv() {
                Ok(q) => lanes.push(q),
                Err(_) => return,
            }
        }
        let group_start = conn.total_changes();
        let began = std::time::Instant::now();
        let mut sync = false;
        // The first urgent job's wait before it ran and its own run (the timing log); Some
        // once the group holds an urgent job.
        let mut urgent_times = None;
        while let Some(q) = lanes.next(&rx) {
            let before = conn.total_changes();
            let (queued_at, started) = (q.queued_at, std::time::Instant::now());
            replies.push((q.job)(&mut conn));
            if q.urgency == Urgency::First && urgent_times.is_none() {
                urgent_times = Some((started - queued_at, started.elapsed()));
            }
            sync |= q.durability == Durability::Durable && conn.total_changes() != before;
            // An urgent caller waits for its group's fsync only, not for a result chunk or a
            // submit batch that would otherwise have joined the group.
            if replies.len() >= GROUP
                || began.elapsed() >= GROUP_TIME
                || (urgent_times.is_some() && !lanes.urgent_waiting(&rx))
            {
                break;
            }
        }
        let changed_any = conn.total_changes() != group_start;
        let t = std::time::Instant::now();
        if sync {
            let synced = sync_group(&conn);
            crate::metrics::get().store_op("fsync", "group", t.elapsed());
            if let Err(e) = synced {
                // Nothing acknowledged can be trusted to be on disk: stop answering.
                tracing::error!("the store cannot make its changes durable: {e}");
                return;
            }
        }
        if changed_any {
            // Waiters on the event feed read again when it moved (`Store::subscribe`).
            match events::newest(&conn) {
                Ok(top) => {
                    changed.send_if_modified(|seen| std::mem::replace(seen, top) != top);
                }
                Err(e) => tracing::error!("the store cannot read its newest event: {e}"),
            }
        }
        if let Some((waited, ran)) = urgent_times {
            let synced = t.elapsed();
            if waited + ran + synced >= std::time::Duration::from_millis(20) {
                tracing::debug!(
                    target: "datarun::timing",
                    "urgent_wait_ms={:.3} urgent_run_ms={:.3} group_sync_ms={:.3} group_jobs={}",
                    waited.as_secs_f64() * 1000.0,
                    ran.as_secs_f64() * 1000.0,
                    synced.as_secs_f64() * 1000.0,
                    replies.len()
                );
            }
        }
        for reply in replies.drain(..) {
            reply();
        }
    }
}

/// Copies the WAL's committed pages into the database file every [`CHECKPOINT_EVERY`]
/// (a passive checkpoint: it waits for no reader and never blocks the writer, which goes on
/// appending meanwhile; SQLite starts the WAL over once all of it is copied). Ends with the
/// writer (`writer_gone`), after one last checkpoint.
pub(super) fn checkpointer(conn: Connection, writer_gone: std::sync::mpsc::Receiver<()>) {
    let mut seen = (0, 0);
    loop {
        let last = !matches!(
            writer_gone.recv_timeout(CHECKPOINT_EVERY),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        let t = std::time::Instant::now();
        // (pages in the WAL, pages of it copied): the same twice when nothing was written.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match done {
            Ok(pages) if pages != seen => {
                seen = pages;
                crate::metrics::get().store_op("checkpoint", "wal", t.elapsed())
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("the store's WAL checkpoint failed: {e}"),
        }
        if last {
            return;
        }
    }
}

/// The writer's jobs taken off the channel: urgent ones first; then the master's and everyone
/// else's in turn, one job each; each lane in its order.
#[derive(Default)]
struct Lanes {
    urgent: std::collections::VecDeque<Queued>,
    master: std::collections::VecDeque<Queued>,
    others: std::collections::VecDeque<Queued>,
    /// The master's lane had the last turn.
    master_went: bool,
}

impl Lanes {
    fn push(&mut self, mut q: Queued) {
        if q.urgency == Urgency::FirstIfJobsWait {
            q.urgency = if self.is_empty() {
                Urgency::InTurn
            } else {
                Urgency::First
            };
        }
        if q.urgency == Urgency::First {
            self.urgent.push_back(q)
        } else if q.lane == Lane::Master {
            self.master.push_back(q)
        } else {
            self.others.push_back(q)
        }
    }

    fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.master.is_empty() && self.others.is_empty()
    }

    fn take_arrived(&mut self, rx: &std::sync::mpsc::Receiver<Queued>) {
        while let Ok(q) = rx.try_recv() {
            self.push(q);
        }
    }

    /// An urgent job waits (after sorting in what arrived).
    fn urgent_waiting(&mut self, rx: &std::sync::mpsc::Receiver<Queued>) -> bool {
        self.take_arrived(rx);
        !self.urgent.is_empty()
    }

    /// The next job: whatever arrived meanwhile is sorted in first, so an urgent job that came
    /// while another ran goes next.
    fn next(&mut self, rx: &std::sync::mpsc::Receiver<Queued>) -> Option<Queued> {
        self.take_arrived(rx);
        if let Some(q) = self.urgent.pop_front() {
            return Some(q);
        }
        let (first, second) = if self.master_went {
            (&mut self.others, &mut self.master)
        } else {
            (&mut self.master, &mut self.others)
        };
        let q = first.pop_front().or_else(|| second.pop_front())?;
        self.master_went = q.lane == Lane::Master;
        Some(q)
    }
}

/// One fully synced commit: makes every earlier commit of the WAL durable too.
fn sync_group(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    let done = conn.execute("UPDATE sync_marker SET n = n + 1 WHERE id = 1", []);
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    done.map(|_| ())
}
