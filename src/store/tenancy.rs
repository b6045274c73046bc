//! The tenancy rule's store side (README "Tenancy"): whose a resource is, and who may name a
//! blob as a fold input.
//!
//! A resource another owner holds answers exactly as a missing one does (`Resource::missing`
//! is the one message both use), so ids tell nothing about other tenants. A blob is usable by
//! the owners who uploaded its bytes or for whom the store put them (a dataset's files, a
//! submission's files and tables, a custom split's files): `blob_owners`, filled by `own`.

use super::{Result, Scope, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

/// A resource the API hands out by id.
#[derive(Clone, Copy, Debug)]
pub enum Resource {
    Fold(i64),
    Dataset(i64),
    Split(i64),
    Submission(i64),
    SubmissionFold(i64),
}

impl Resource {
    /// What a missing resource answers, and so also one of another owner.
    pub fn missing(self) -> StoreError {
        StoreError::NotFound(match self {
            Resource::Fold(id) => format!("no fold with id {id}"),
            Resource::Dataset(id) => format!("no dataset with id {id}"),
            Resource::Split(id) => format!("no split with id {id}"),
            Resource::Submission(id) => format!("no submission with id {id}"),
            Resource::SubmissionFold(id) => format!("no submission fold with id {id}"),
        })
    }

    /// The query of its owner (its id as `?1`) and the id: one owner column, or no row.
    pub(super) fn owner_query(self) -> (&'static str, i64) {
        match self {
            Resource::Fold(id) => ("SELECT owner FROM folds WHERE id = ?1", id),
            Resource::Dataset(id) => ("SELECT owner FROM datasets WHERE id = ?1", id),
            Resource::Split(id) => (
                "SELECT d.owner FROM splits p JOIN datasets d ON d.id = p.dataset_id WHERE p.id = ?1",
                id,
            ),
            Resource::Submission(id) => ("SELECT owner FROM submissions WHERE id = ?1", id),
            Resource::SubmissionFold(id) => (
                "SELECT s.owner FROM submission_folds sf JOIN submissions s ON s.id = sf.submission_id
                 WHERE sf.id = ?1",
                id,
            ),
        }
    }

    /// Its owner: `None` when it does not exist, `Some(None)` for a dataset from before owners.
    fn owner(self, conn: &Connection) -> rusqlite::Result<Option<Option<String>>> {
        let (sql, id) = self.owner_query();
        conn.prepare_cached(sql)?
            .query_row([id], |r| r.get(0))
            .optional()
    }
}

/// Ok when `scope` sees the resource; else the resource's "missing" error.
pub(super) fn check(conn: &Connection, scope: &Scope, r: Resource) -> Result<()> {
    match r.owner(conn)? {
        Some(owner) if scope.sees(owner.as_deref()) => Ok(()),
        _ => Err(r.missing()),
    }
}

/// Records `owner` as an owner of blob `sha` (idempotent).
pub(super) fn own(conn: &Connection, sha: &str, owner: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO blob_owners (sha256, owner) VALUES (?1, ?2)")?
        .execute(params![sha, owner])?;
    Ok(())
}

/// Whether a fold of `owner` may name blob `sha` as an input: it is stored and `owner` owns
/// it, or an admin acts (`admin`), for whom it need only be stored.
pub(super) fn may_use(conn: &Connection, sha: &str, owner: &str, admin: bool) -> Result<bool> {
    let found = if admin {
        conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = ?1)")?
            .query_row([sha], |r| r.get(0))?
    } else {
        conn.prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM blob_owners o JOIN blobs b ON b.sha256 = o.sha256
             WHERE o.sha256 = ?1 AND o.owner = ?2)",
        )?
        .query_row(params![sha, owner], |r| r.get(0))?
    };
    Ok(found)
}

impl Store {
    /// Ok when `scope` sees the resource, else the same NotFound as for a missing one.
    pub async fn visible(&self, scope: &Scope, r: Resource) -> Result<()> {
        if let Some(pg) = self.pg() {
            return pg.visible(scope, r).await;
        }
        let scope = scope.clone();
        self.read(move |conn| check(conn, &scope, r)).await
    }

    /// Records `owner` as an owner of these (stored) blobs: they uploaded the bytes.
    pub async fn own_blobs(&self, owner: String, shas: Vec<String>) -> Result<()> {
        if let Some(pg) = self.pg() {
            return pg.own_blobs(owner, shas).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for sha in &shas {
                own(&tx, sha, &owner)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Whether `scope` may use blob `sha` (own it, or see everything and it is stored).
    pub async fn may_use_blob(&self, scope: &Scope, sha: String) -> Result<bool> {
        if let Some(pg) = self.pg() {
            return pg.may_use_blob(scope, sha).await;
        }
        let scope = scope.clone();
        self.call(move |conn| match &scope {
            Scope::All => may_use(conn, &sha, "", true),
            Scope::Owner(owner) => may_use(conn, &sha, owner, false),
        })
        .await
    }
}
