//! Shares of a limited resource counted per key (a client address's connections, an owner's
//! waiter slots): at most so many held at once per key, each given back when its [`Share`] is
//! dropped. Keys holding nothing are forgotten, so the map is as large as the holders.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many shares each key holds now.
pub struct Shares<K: Eq + Hash + Clone>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: Eq + Hash + Clone> Default for Shares<K> {
    fn default() -> Self {
        Shares(Arc::default())
    }
}

/// One share of `key`, held until dropped.
pub struct Share<K: Eq + Hash + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

fn lock<K>(m: &Mutex<HashMap<K, usize>>) -> MutexGuard<'_, HashMap<K, usize>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Eq + Hash + Clone> Shares<K> {
    /// A share for `key`, or `Err(held)` when it already holds `max`.
    pub fn take(&self, key: K, max: usize) -> Result<Share<K>, usize> {
        let mut counts = lock(&self.0);
        let n = counts.entry(key.clone()).or_default();
        if *n >= max {
            return Err(*n);
        }
        *n += 1;
        Ok(Share {
            counts: self.0.clone(),
            key,
        })
    }
}

impl<K: Eq + Hash + Clone> Drop for Share<K> {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_and_gets_room_back_when_a_share_drops() {
        let shares = Shares::default();
        let a = shares.take("a", 2).unwrap();
        let _b = shares.take("a", 2).unwrap();
        assert_eq!(shares.take("a", 2).err(), Some(2));
        let _c = shares.take("c", 2).unwrap();
        drop(a);
        assert!(shares.take("a", 2).is_ok());
        drop(_c);
        assert!(
            !lock(&shares.0).contains_key("c"),
            "a key holding nothing is forgotten"
        );
    }
}
