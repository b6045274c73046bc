//! Listings that page: one page of folds (by id, or by seq for "changed since"), with the
//! cursor of the next. A page costs what it holds, whatever the number of folds.

use super::records::{fold_from_row, FoldFilter, FoldPage, FOLD_COLUMNS};
use super::{Result, Store};

/// Cuts rows fetched with one more than `limit` down to the page; returns the id of its last
/// row when there were more (the `after` of the next page).
pub(super) fn cut<T>(rows: &mut Vec<T>, limit: Option<u32>, id: impl Fn(&T) -> i64) -> Option<i64> {
    let limit = limit? as usize;
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(id)
}

impl Store {
    /// One page of folds matching `filter`, in seq order with `since`, else in id order; the
    /// cost is the page's, whatever the number of folds (indexes on seq and id).
    pub async fn list_folds(&self, filter: FoldFilter) -> Result<FoldPage> {
        use crate::model::limits::{json_size, DEFAULT_PAGE, MAX_PAGE, MAX_PAGE_BYTES};
        if let Some(pg) = self.pg() {
            return pg.list_folds(filter).await;
        }
        self.read(move |conn| {
            let mut sql = format!("SELECT {FOLD_COLUMNS} FROM folds f LEFT JOIN attempts a ON a.id = f.last_attempt WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if !filter.states.is_empty() {
                let marks: Vec<String> = filter.states.iter().map(|s| format!("'{}'", s.as_str())).collect();
                sql.push_str(&format!(" AND f.state IN ({})", marks.join(",")));
            }
            if let Some(q) = filter.queue {
                args.push(q.into());
                sql.push_str(&format!(" AND f.queue = ?{}", args.len()));
            }
            if let Some(a) = filter.array {
                args.push(a.into());
                sql.push_str(&format!(" AND f.array_id = ?{}", args.len()));
            }
            if let Some(o) = filter.owner {
                args.push(o.into());
                sql.push_str(&format!(" AND f.owner = ?{}", args.len()));
            }
            let by_seq = filter.since.is_some();
            if let Some(s) = filter.since {
                args.push(s.into());
                sql.push_str(&format!(" AND f.seq > ?{}", args.len()));
            } else if filter.newest_first {
                if let Some(before) = filter.before {
                    args.push(before.into());
                    sql.push_str(&format!(" AND f.id < ?{}", args.len()));
                }
            } else if let Some(after) = filter.after {
                args.push(after.into());
                sql.push_str(&format!(" AND f.id > ?{}", args.len()));
            }
            sql.push_str(match (by_seq, filter.newest_first) {
                (true, _) => " ORDER BY f.seq",
                (false, true) => " ORDER BY f.id DESC",
                (false, false) => " ORDER BY f.id",
            });
            let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
            // One more than the page, to know whether there are more.
            sql.push_str(&format!(" LIMIT {}", limit + 1));
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query_map(rusqlite::params_from_iter(args), fold_from_row)?;
            let (mut folds, mut bytes, mut more) = (Vec::new(), 0, false);
            for row in rows.by_ref() {
                if folds.len() == limit || bytes >= MAX_PAGE_BYTES {
                    more = true;
                    break;
                }
                let fold = row?;
                bytes += json_size(&fold.spec);
                folds.push(fold);
            }
            let last = folds.last().map(|f| if by_seq { f.seq } else { f.id });
            let seq = match (more, by_seq, folds.last()) {
                (true, true, Some(f)) => f.seq,
                _ => conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?,
            };
            Ok(FoldPage { folds, seq, next: last.filter(|_| more) })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FoldSpec, HoldCode};
    use std::collections::BTreeMap;

    /// Pages of 3 by id and by seq, while folds change between pages, never skip a fold or
    /// a change.
    #[tokio::test]
    async fn pages_never_skip_a_fold() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let spec: FoldSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
        let ids = store
            .submit("ann".into(), false, vec![(spec, None); 10])
            .await
            .unwrap();
        let page = |since: Option<i64>, after: Option<i64>| FoldFilter {
            since,
            after,
            limit: Some(3),
            ..Default::default()
        };
        // By id: 3 + 3 + 3 + 1, each `next` the last id, then none.
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let p = store.list_folds(page(None, after)).await.unwrap();
            seen.extend(p.folds.iter().map(|f| f.id));
            match p.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ids);
        // By seq from 0: a page's seq is its last fold's while more follow, and folds held
        // between pages come again later with their new seq.
        let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
        let mut since = 0;
        let mut pages = 0;
        loop {
            let p = store.list_folds(page(Some(since), None)).await.unwrap();
            for f in &p.folds {
                assert!(f.seq > since);
                latest.insert(f.id, f.seq);
            }
            if pages == 0 {
                assert_eq!(
                    p.seq,
                    p.folds.last().unwrap().seq,
                    "a full page ends at its last row"
                );
                for id in [ids[0], ids[9]] {
                    store
                        .hold(id, HoldCode::User, "between pages".into())
                        .await
                        .unwrap();
                }
            }
            pages += 1;
            since = p.seq;
            if p.next.is_none() {
                break;
            }
            assert_eq!(p.next, Some(p.seq));
        }
        assert_eq!(latest.len(), 10, "every fold seen: {latest:?}");
        for id in [ids[0], ids[9]] {
            assert_eq!(
                latest[&id],
                store.fold(id).await.unwrap().seq,
                "fold {id}'s hold seen"
            );
        }
        // The last page's seq is the newest of all: nothing newer to follow.
        let p = store.list_folds(page(Some(since), None)).await.unwrap();
        assert!(p.folds.is_empty() && p.seq == since && p.next.is_none());
    }

    /// Newest first: pages of 4 by `before`, in descending ids, filtered by state.
    #[tokio::test]
    async fn newest_first_pages_down_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let spec: FoldSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
        let ids = store
            .submit("ann".into(), false, vec![(spec, None); 10])
            .await
            .unwrap();
        store
            .hold(ids[3], HoldCode::User, "x".into())
            .await
            .unwrap();
        let (mut seen, mut before) = (Vec::new(), None);
        loop {
            let p = store
                .list_folds(FoldFilter {
                    newest_first: true,
                    before,
                    states: vec![crate::model::FoldState::Idle],
                    limit: Some(4),
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(p.folds.iter().map(|f| f.id));
            match p.next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        let want: Vec<i64> = ids.iter().rev().copied().filter(|i| *i != ids[3]).collect();
        assert_eq!(seen, want);
    }
}
