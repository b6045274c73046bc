//! The event feed (`store::events`, `store::pg::ops`): a fold filter naming more folds than
//! the window holds ids is read by the window's range and picked in memory; it answers the
//! same pages as the search per fold, on both engines.

use super::spec;
use datarun::model::FoldId;
use datarun::store::{EventFilter, Scope, Store};

pub async fn fold_filters_long_and_short(s: Store) {
    let ids = s
        .submit(
            "ann".into(),
            false,
            vec![(spec(r#"{"command":["true"]}"#), None); 20],
        )
        .await
        .unwrap();
    s.submit(
        "bob".into(),
        false,
        vec![(spec(r#"{"command":["true"]}"#), None); 3],
    )
    .await
    .unwrap();
    let wanted: Vec<FoldId> = vec![ids[2], ids[5], ids[7], ids[19]];
    let mut long = wanted.clone();
    long.extend(100_000..101_000); // folds that do not exist
    for scope in [
        Scope::All,
        Scope::Owner("ann".into()),
        Scope::Owner("bob".into()),
    ] {
        for limit in [1, 3, 100] {
            let mut pages: Vec<Vec<_>> = Vec::new();
            for folds in [&wanted, &long] {
                // Page through from 0 to the newest event.
                let (mut since, mut seen) = (0, Vec::new());
                loop {
                    let p = s
                        .events_after(EventFilter {
                            since: Some(since),
                            folds: Some(folds.clone()),
                            scope: scope.clone(),
                            limit,
                        })
                        .await
                        .unwrap();
                    seen.extend(p.events.iter().map(|e| (e.seq, e.fold, e.kind.clone())));
                    since = p.seq;
                    if p.caught_up && p.events.len() < limit as usize {
                        break;
                    }
                }
                pages.push(seen);
            }
            assert_eq!(pages[0], pages[1], "{scope:?} limit {limit}");
            let expect = if matches!(&scope, Scope::Owner(o) if o == "bob") {
                0
            } else {
                4
            };
            assert_eq!(
                pages[1].len(),
                expect,
                "{scope:?} limit {limit}: {:?}",
                pages[1]
            );
        }
    }
}
