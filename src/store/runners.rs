//! Runners as last seen: their inventory entry, the facts their agent reported, their state.

use super::{now_ms, Result, Store};
use rusqlite::params;

impl Store {
    /// Records a runner's inventory entry (JSON) and state; `facts` (JSON) when an agent
    /// reported them, which also marks the runner as seen now.
    pub async fn upsert_runner(
        &self,
        name: String,
        spec: String,
        state: String,
        facts: Option<String>,
    ) -> Result<()> {
        self.upsert_runners(vec![(name, spec, state, facts)]).await
    }

    /// `upsert_runner` for many runners in one transaction (a start-up or reload with
    /// thousands of runners is one commit, not thousands).
    pub async fn upsert_runners(
        &self,
        rows: Vec<(String, String, String, Option<String>)>,
    ) -> Result<()> {
        if let Some(pg) = self.pg() {
            return pg.upsert_runners(rows).await;
        }
        if rows.is_empty() {
            return Ok(());
        }
        self.call(move |conn| {
            let now = now_ms();
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO runners (name, spec, facts, state, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, state = excluded.state,
                       facts = COALESCE(excluded.facts, runners.facts), last_seen = COALESCE(excluded.last_seen, runners.last_seen)",
                )?;
                for (name, spec, state, facts) in rows {
                    let seen = facts.as_ref().map(|_| now);
                    stmt.execute(params![name, spec, facts, state, now, seen])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn set_drained(&self, name: String, drained: bool) -> Result<()> {
        if let Some(pg) = self.pg() {
            return pg.set_drained(name, drained).await;
        }
        self.call(move |conn| {
            conn.execute(
                "UPDATE runners SET drained = ?1 WHERE name = ?2",
                params![drained, name],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn drained_runners(&self) -> Result<Vec<String>> {
        if let Some(pg) = self.pg() {
            return pg.drained_runners().await;
        }
        self.call(|conn| {
            Ok(conn
                .prepare_cached("SELECT name FROM runners WHERE drained = 1 ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// (name, state, facts JSON) of every runner ever seen.
    pub async fn runners(&self) -> Result<Vec<(String, String, Option<String>)>> {
        if let Some(pg) = self.pg() {
            return pg.runners().await;
        }
        self.call(|conn| {
            Ok(conn
                .prepare_cached("SELECT name, state, facts FROM runners ORDER BY name")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn facts_survive_a_state_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .upsert_runner("a".into(), "{}".into(), "connecting".into(), None)
            .await
            .unwrap();
        store
            .upsert_runner(
                "a".into(),
                "{}".into(),
                "ready".into(),
                Some(r#"{"cpus":2}"#.into()),
            )
            .await
            .unwrap();
        store
            .upsert_runner("a".into(), "{}".into(), "disconnected".into(), None)
            .await
            .unwrap();
        let rows = store.runners().await.unwrap();
        assert_eq!(
            rows,
            vec![(
                "a".to_string(),
                "disconnected".to_string(),
                Some(r#"{"cpus":2}"#.to_string())
            )]
        );
    }
}
