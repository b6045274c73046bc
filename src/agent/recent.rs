//! Answers remembered for a moment: a lookup a stream of folds makes again and again (a
//! program along PATH) is made once a [`REMEMBER`], not once a fold, and a change on disk is
//! seen within that moment.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is remembered.
pub const REMEMBER: Duration = Duration::from_secs(1);
/// Answers remembered at most (all are forgotten at once beyond).
const MAX: usize = 256;

pub struct Recent<K, V> {
    answers: Mutex<Option<HashMap<K, (V, Instant)>>>,
}

impl<K: Eq + Hash, V: Clone> Recent<K, V> {
    pub const fn new() -> Recent<K, V> {
        Recent {
            answers: Mutex::new(None),
        }
    }

    /// The answer remembered for `key` in the last [`REMEMBER`], if any.
    pub fn get(&self, key: &K) -> Option<V> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let (value, at) = answers.as_ref()?.get(key)?;
        (at.elapsed() < REMEMBER).then(|| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let answers = answers.get_or_insert_with(HashMap::new);
        if answers.len() >= MAX {
            answers.clear();
        }
        answers.insert(key, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_remembered_for_a_moment_only() {
        let recent: Recent<&str, u32> = Recent::new();
        assert_eq!(recent.get(&"a"), None);
        recent.put("a", 1);
        assert_eq!(recent.get(&"a"), Some(1));
        assert_eq!(recent.get(&"b"), None);
        // Aged past the moment: forgotten.
        recent
            .answers
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .get_mut("a")
            .unwrap()
            .1 -= REMEMBER;
        assert_eq!(recent.get(&"a"), None);
        // Bounded: the map starts again beyond MAX.
        for i in 0..MAX as u32 + 1 {
            recent.put(Box::leak(i.to_string().into_boxed_str()), i);
        }
        assert!(recent.answers.lock().unwrap().as_ref().unwrap().len() <= MAX);
    }
}
