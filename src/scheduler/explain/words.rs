//! The words of the explanations: counts, sizes, durations and name lists that read right
//! ("1 runner", "2 CPUs", sizes that never read as equal when they differ).

use crate::scheduler::RunnerView;
use crate::units::{format_duration, format_size};
use std::time::Duration;

/// How many runner names a message lists before "and N more".
const NAMES: usize = 3;
/// How many queue or image names a message lists before "...".
const QUEUES: usize = 8;

pub(in crate::scheduler) fn n_runners(n: usize) -> String {
    if n == 1 {
        "1 runner".into()
    } else {
        format!("{n} runners")
    }
}

pub(in crate::scheduler) fn verb(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

pub(in crate::scheduler) fn cpus(millicpus: u64) -> String {
    if millicpus.is_multiple_of(1000) {
        format!("{}", millicpus / 1000)
    } else {
        let s = format!("{:.3}", millicpus as f64 / 1000.0);
        s.trim_end_matches('0').to_string()
    }
}

pub(in crate::scheduler) fn cpus_word(millicpus: u64) -> &'static str {
    if millicpus == 1000 {
        "CPU"
    } else {
        "CPUs"
    }
}

pub(in crate::scheduler) fn gpus_word(n: u64) -> &'static str {
    if n == 1 {
        "GPU"
    } else {
        "GPUs"
    }
}

/// Two sizes that never read as equal when they differ ("2G" vs "2G" becomes bytes).
pub(in crate::scheduler) fn sizes(have: u64, ask: u64) -> (String, String) {
    let (a, b) = (format_size(have), format_size(ask));
    if a == b && have != ask {
        (format!("{have}B"), format!("{ask}B"))
    } else {
        (a, b)
    }
}

/// Two durations that never read as equal when they differ.
pub(in crate::scheduler) fn durations(have: u64, ask: u64) -> (String, String) {
    let f = |ms| format_duration(Duration::from_millis(ms));
    let (a, b) = (f(have), f(ask));
    if a == b && have != ask {
        (format!("{have}ms"), format!("{ask}ms"))
    } else {
        (a, b)
    }
}

/// "a: why; b: why; c: why; and 2 more"
pub(in crate::scheduler) fn name_list(names: impl Iterator<Item = String>, total: usize) -> String {
    let mut out: Vec<String> = names.take(NAMES).collect();
    if total > out.len() {
        out.push(format!("and {} more", total - out.len()));
    }
    out.join("; ")
}

/// Queue names in order of first appearance, at most `QUEUES` of them.
pub(in crate::scheduler) fn queue_list<'a>(
    runners: impl Iterator<Item = &'a RunnerView>,
) -> String {
    union_list(runners.map(|r| r.queues.as_slice()))
}

/// The names of several lists in order of first appearance, at most `QUEUES` of them.
pub(super) fn union_list<'a>(lists: impl Iterator<Item = &'a [String]>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut more = false;
    for list in lists {
        for q in list {
            if !seen.contains(&q.as_str()) {
                if seen.len() == QUEUES {
                    more = true;
                    break;
                }
                seen.push(q);
            }
        }
        if more {
            break;
        }
    }
    let mut s = seen.join(", ");
    if more {
        s.push_str(", ...");
    }
    s
}
