//! The event log as a feed (`GET /api/v1/events`): the events after a seq, oldest first, a
//! page at most, of what the caller may see (README "Tenancy"), optionally only of given
//! folds; and the change signal: the newest event's id, which the writer publishes after each
//! group of jobs that changed anything, so waiters read again only when there is a new event.
//!
//! Costs follow the events after `since`, never the table: a read looks at one window of at
//! most [`WINDOW`] event ids after `since` (a range of the primary key), joining each event's
//! fold by its id; with a fold filter the `events_fold` index (fold id, then rowid) is searched
//! per fold, or, when the window holds fewer ids than the filter names folds, the window is
//! read by its range and the folds picked out ([`plan`]). A window with nothing the caller may see still moves the answer's `seq` past it.

use super::{Result, Scope, Store, StoreError};
use crate::model::{AttemptId, FoldId, FoldState};
use rusqlite::Connection;
use serde::Serialize;

/// The most event ids one read looks at past `since`.
pub const WINDOW: i64 = 10_000;

/// One event as the feed hands it out.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FeedEvent {
    /// The event's id: the feed's position (pass the last as the next `since`).
    pub seq: i64,
    /// When it happened, ms since the epoch.
    pub at: i64,
    pub fold: Option<FoldId>,
    pub attempt: Option<AttemptId>,
    pub kind: String,
    pub detail: String,
    /// The fold's state after this event, given when it is the fold's newest event (so a
    /// waiter knows "done" without asking again); later events of the fold carry it otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<FoldState>,
}

/// What to read: events after `since` (none: from the newest, no backlog) that `scope` may
/// see, of `folds` only when given, at most `limit`.
#[derive(Clone, Debug)]
pub struct EventFilter {
    pub since: Option<i64>,
    pub folds: Option<Vec<FoldId>>,
    pub scope: Scope,
    pub limit: u32,
}

/// A page of the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<FeedEvent>,
    /// Where the next read starts (`since`): the last event's seq when the page is full, else
    /// the end of the window read. Nothing at or before it is ever handed out again.
    pub seq: i64,
    /// Whether the read reached the newest event (else more may follow at once).
    pub caught_up: bool,
}

/// The columns of a feed event; `f` is the fold, joined by id.
const COLUMNS: &str = "e.id, e.at, e.fold_id, e.attempt_id, e.kind, e.detail, CASE WHEN f.seq = e.id THEN f.state END";

/// The query for one window: `?1 < id <= ?2`, visible to the owner `?3` (NULL: everyone),
/// at most `?4` rows; with `folds`, only their events (ids are integers, written inline).
pub(super) fn window_sql(scope: &Scope, folds: Option<&[FoldId]>) -> String {
    let visible = match scope {
        // An admin sees every event, those of no fold (inventory, maintenance) too.
        Scope::All => "?3 IS NULL",
        // `+`: not by the owner index, which would walk all the owner's folds; the window of
        // events leads, each fold found by its id.
        Scope::Owner(_) => "+f.owner = ?3",
    };
    let of_folds = match folds {
        None => String::new(),
        Some(ids) => {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            format!(" AND e.fold_id IN ({})", ids.join(","))
        }
    };
    format!(
        "SELECT {COLUMNS} FROM events e LEFT JOIN folds f ON f.id = e.fold_id
         WHERE e.id > ?1 AND e.id <= ?2{of_folds} AND {visible} ORDER BY e.id LIMIT ?4"
    )
}

/// How a window is read. With a fold filter the `events_fold` index is searched once per
/// fold; when the window holds fewer event ids than the filter names folds (a waiter on 1,000
/// folds polling while they change), the window is read by its key range instead and the
/// folds picked out of it here: a read costs the fewer of the two, and its SQL does not
/// change with the ids (one cached statement).
pub(super) struct Plan<'a> {
    /// The folds the SQL names (`window_sql`).
    pub sql_folds: Option<&'a [FoldId]>,
    /// The folds picked out of the rows read (all the window's rows are read).
    pub pick: Option<std::collections::HashSet<FoldId>>,
    /// The LIMIT to bind: one more than the page, or the whole window when picking.
    pub limit: i64,
}

pub(super) fn plan(filter: &EventFilter, since: i64, end: i64, limit: usize) -> Plan<'_> {
    match filter.folds.as_deref() {
        Some(folds) if (end - since) < folds.len() as i64 => Plan {
            sql_folds: None,
            pick: Some(folds.iter().copied().collect()),
            limit: end - since + 1,
        },
        folds => Plan {
            sql_folds: folds,
            pick: None,
            limit: limit as i64 + 1,
        },
    }
}

impl Plan<'_> {
    /// The rows read, with only the filter's folds when they were picked here.
    pub fn picked(&self, mut events: Vec<FeedEvent>) -> Vec<FeedEvent> {
        if let Some(pick) = &self.pick {
            events.retain(|e| e.fold.is_some_and(|f| pick.contains(&f)));
        }
        events
    }
}

/// The newest event's id (0 when there is none).
pub(super) fn newest(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
        .query_row([], |r| r.get(0))
}

/// The window a read looks at, `since < id <= end`, given the newest event `top`.
pub(super) fn window(filter: &EventFilter, top: i64) -> Result<(i64, i64)> {
    let since = filter.since.unwrap_or(top);
    if since < 0 {
        return Err(StoreError::Invalid(format!(
            "since: {since} is not a seq (0 or more)"
        )));
    }
    if since > top {
        return Err(StoreError::Invalid(format!(
            "since: {since} is after the newest event, {top} (a seq from another master?)"
        )));
    }
    Ok((since, top.min(since.saturating_add(WINDOW))))
}

/// The page of a window's events (read with one more than `limit`, to know a page is full).
pub(super) fn page(
    mut events: Vec<FeedEvent>,
    since: i64,
    end: i64,
    top: i64,
    limit: usize,
) -> EventPage {
    if events.len() > limit {
        events.truncate(limit);
        let seq = events.last().map_or(since, |e| e.seq);
        return EventPage {
            events,
            seq,
            caught_up: false,
        };
    }
    EventPage {
        events,
        seq: end,
        caught_up: end == top,
    }
}

fn read_page(conn: &Connection, filter: &EventFilter) -> Result<EventPage> {
    // The newest id first: every event up to it is committed (one writer, ids in commit
    // order), so a window that ends there never passes over one that commits later.
    let top = newest(conn)?;
    let (since, end) = window(filter, top)?;
    let limit = filter.limit.max(1) as usize;
    let plan = plan(filter, since, end, limit);
    let sql = window_sql(&filter.scope, plan.sql_folds);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params![since, end, filter.scope.owner(), plan.limit],
        |r| {
            let state: Option<String> = r.get(6)?;
            Ok(FeedEvent {
                seq: r.get(0)?,
                at: r.get(1)?,
                fold: r.get(2)?,
                attempt: r.get(3)?,
                kind: r.get(4)?,
                detail: r.get(5)?,
                state: state.as_deref().and_then(FoldState::parse),
            })
        },
    )?;
    let events = plan.picked(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    Ok(page(events, since, end, top, limit))
}

impl Store {
    /// A receiver of the change signal: the newest event's id, published after each group of
    /// writes that changed anything, once it is durable. Read a page, then wait until the
    /// value passes the page's `seq` (`wait_for(|top| *top > seq)`): an event committed after
    /// the read is always published later, so none is missed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        if let Some(pg) = self.pg() {
            return pg.subscribe();
        }
        self.changes.clone()
    }

    /// The newest committed event's id (0: none), on a reader connection: it may be ahead of
    /// the change signal, which is published once the group is durable.
    pub async fn newest_event(&self) -> Result<i64> {
        if let Some(pg) = self.pg() {
            return pg.newest_event().await;
        }
        self.read(|conn| Ok(newest(conn)?)).await
    }

    /// One page of the feed (see [`EventFilter`]), on a reader connection. A `since` after the
    /// newest event, or below 0, is refused (400).
    pub async fn events_after(&self, filter: EventFilter) -> Result<EventPage> {
        if let Some(pg) = self.pg() {
            return pg.events_after(filter).await;
        }
        self.read(move |conn| read_page(conn, &filter)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FoldSpec, HoldCode};

    fn spec() -> FoldSpec {
        serde_json::from_str(r#"{"command":["true"]}"#).unwrap()
    }

    fn filter(since: Option<i64>, scope: Scope, limit: u32) -> EventFilter {
        EventFilter {
            since,
            folds: None,
            scope,
            limit,
        }
    }

    /// Pages of 7 from 0 hand out every event once, in order, while folds change between
    /// pages; another owner's events never show; the newest event carries the fold's state.
    #[tokio::test]
    async fn pages_hand_out_each_visible_event_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let ann = store
            .submit("ann".into(), false, vec![(spec(), None); 10])
            .await
            .unwrap();
        let bob = store
            .submit("bob".into(), false, vec![(spec(), None); 5])
            .await
            .unwrap();
        let ann_scope = Scope::Owner("ann".into());
        let (mut seen, mut since, mut pages) = (Vec::new(), 0, 0);
        loop {
            let p = store
                .events_after(filter(Some(since), ann_scope.clone(), 7))
                .await
                .unwrap();
            assert!(p.seq >= since);
            for e in &p.events {
                assert!(e.seq > since && e.seq <= p.seq);
                assert!(ann.contains(&e.fold.unwrap()), "only ann's: {e:?}");
            }
            seen.extend(p.events.iter().map(|e| e.seq));
            if pages == 0 {
                store
                    .hold(ann[0], HoldCode::User, "between pages".into())
                    .await
                    .unwrap();
                store
                    .hold(bob[0], HoldCode::User, "not ann's".into())
                    .await
                    .unwrap();
            }
            pages += 1;
            since = p.seq;
            if p.caught_up && p.events.is_empty() {
                break;
            }
        }
        // 10 submitted events, then one hold, each once, in order.
        assert_eq!(seen.len(), 11, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        // The admin sees all 17, the hold event with the fold's state.
        let all = store
            .events_after(filter(Some(0), Scope::All, 100))
            .await
            .unwrap();
        assert_eq!(all.events.len(), 17);
        assert!(all.caught_up);
        let held = all
            .events
            .iter()
            .find(|e| e.fold == Some(ann[0]) && e.kind == "held");
        assert_eq!(
            held.unwrap().state,
            Some(FoldState::Held),
            "{:?}",
            all.events
        );
        let first = all.events.iter().find(|e| e.fold == Some(ann[0])).unwrap();
        assert_eq!(first.state, None, "an older event of the fold has no state");
        // From now: nothing, at the newest seq; a fold filter naming bob's fold shows ann none.
        let now = store
            .events_after(filter(None, ann_scope.clone(), 100))
            .await
            .unwrap();
        assert_eq!((now.events.len(), now.seq), (0, all.seq));
        let mut of_bob = filter(Some(0), ann_scope, 100);
        of_bob.folds = Some(vec![bob[0], bob[1]]);
        assert!(store.events_after(of_bob).await.unwrap().events.is_empty());
        // A seq after the newest, or negative, is refused.
        for since in [all.seq + 1, -1] {
            let e = store
                .events_after(filter(Some(since), Scope::All, 10))
                .await
                .unwrap_err();
            assert!(e.to_string().starts_with("since: "), "{e}");
        }
    }

    /// A filter naming more folds than the window holds ids is read by the window's range
    /// and picked here: the same events, pages and seqs as the per-fold search.
    #[tokio::test]
    async fn a_long_fold_filter_over_a_short_window_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let ids = store
            .submit("ann".into(), false, vec![(spec(), None); 20])
            .await
            .unwrap();
        let wanted = vec![ids[2], ids[5], ids[7], ids[19]];
        let mut long = wanted.clone();
        long.extend(10_000..11_000); // folds that do not exist
        for scope in [
            Scope::All,
            Scope::Owner("ann".into()),
            Scope::Owner("bob".into()),
        ] {
            for limit in [1, 2, 100] {
                let read = |folds: Vec<FoldId>| {
                    let mut f = filter(Some(0), scope.clone(), limit);
                    f.folds = Some(folds);
                    (store.events_after(f.clone()), f)
                };
                let (short, f) = read(wanted.clone());
                assert!(plan(&f, 0, 20, limit as usize).pick.is_none());
                let (picked, f) = read(long.clone());
                assert!(plan(&f, 0, 20, limit as usize).pick.is_some());
                let (short, picked) = (short.await.unwrap(), picked.await.unwrap());
                assert_eq!(short, picked, "{scope:?} limit {limit}");
                let expect = if matches!(&scope, Scope::Owner(o) if o == "bob") {
                    0
                } else {
                    (limit as usize).min(4)
                };
                assert_eq!(picked.events.len(), expect, "{scope:?} limit {limit}");
            }
        }
    }

    /// The plans search the primary key's range and the fold by id (and the fold index with a
    /// filter): never a scan of events or folds.
    #[tokio::test]
    async fn reads_search_indexes_and_never_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let cases = [
            (Scope::All, None),
            (Scope::Owner("ann".into()), None),
            (Scope::All, Some(vec![1, 2, 3])),
            (Scope::Owner("ann".into()), Some(vec![1, 2, 3])),
        ];
        for (scope, folds) in cases {
            let sql = window_sql(&scope, folds.as_deref());
            let owner = scope.owner().map(str::to_string);
            let plan = store
                .read(move |conn| {
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = stmt.query_map(rusqlite::params![0, 10, owner, 5], |r| {
                        r.get::<_, String>(3)
                    })?;
                    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"))
                })
                .await
                .unwrap();
            assert!(!plan.contains("SCAN"), "{plan}");
            assert!(
                plan.contains("SEARCH f USING INTEGER PRIMARY KEY"),
                "{plan}"
            );
            let events = if folds.is_some() {
                "SEARCH e USING INDEX events_fold (fold_id=? AND rowid>? AND rowid<?)"
            } else {
                "SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"
            };
            assert!(plan.contains(events), "{plan}");
        }
    }

    /// The signal is the newest event's id: it moves after a write that added an event, and
    /// not after one that changed nothing or no event.
    #[tokio::test]
    async fn the_signal_follows_new_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let mut rx = store.subscribe();
        assert_eq!(*rx.borrow_and_update(), 0);
        store.call(|_| Ok(())).await.unwrap();
        store
            .upsert_runner("r".into(), "{}".into(), "ready".into(), None)
            .await
            .unwrap();
        assert!(!rx.has_changed().unwrap(), "no new event");
        let id = store
            .submit("ann".into(), false, vec![(spec(), None)])
            .await
            .unwrap()[0];
        assert!(rx.has_changed().unwrap(), "a submit adds an event");
        assert_eq!(*rx.borrow_and_update(), store.fold(id).await.unwrap().seq);
        // A store opened again starts from the newest event.
        drop(store);
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        assert_eq!(*store.subscribe().borrow(), 1);
    }
}
