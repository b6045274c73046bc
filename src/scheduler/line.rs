//! A fold's place in line: the order `schedule` takes idle folds in (queue priority desc,
//! fold priority desc, submit time, id).

use super::PendingFold;
use std::cmp::Reverse;
use std::collections::BTreeMap;

/// The sort key of the matching order.
pub fn order_key(
    f: &PendingFold,
    queue_priority: &BTreeMap<String, i64>,
) -> (Reverse<i64>, Reverse<i64>, i64, i64) {
    let q = queue_priority.get(&f.queue).copied().unwrap_or(0);
    (Reverse(q), Reverse(f.priority), f.submitted_at, f.id)
}

/// How many of `idle` come before `fold` (0 = first in line).
pub fn place_in_line(
    fold: &PendingFold,
    idle: &[PendingFold],
    queue_priority: &BTreeMap<String, i64>,
) -> usize {
    let key = order_key(fold, queue_priority);
    idle.iter()
        .filter(|f| f.id != fold.id && order_key(f, queue_priority) < key)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: i64, queue: &str, priority: i64, submitted_at: i64) -> PendingFold {
        PendingFold {
            id,
            queue: queue.into(),
            owner: "o".into(),
            priority,
            submitted_at,
            millicpus: 1000,
            memory: 1,
            gpus: 0,
            hard_limit_ms: None,
            image: None,
        }
    }

    #[test]
    fn queue_priority_then_priority_then_age() {
        let qp = BTreeMap::from([("H".to_string(), 10)]);
        let idle = vec![
            f(1, "default", 0, 100),
            f(2, "default", 5, 200),
            f(3, "H", -5, 300),
            f(4, "default", 0, 50),
        ];
        let place = |id: i64| place_in_line(idle.iter().find(|x| x.id == id).unwrap(), &idle, &qp);
        assert_eq!([place(3), place(2), place(4), place(1)], [0, 1, 2, 3]);
    }
}
