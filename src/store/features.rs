//! What the PostgreSQL store does not have (README "PostgreSQL: several masters, one
//! active"): one name per feature, asked through `Store::supports` wherever a caller would
//! otherwise test which engine it runs on, and named in the `501` a request that needs one
//! answers (`StoreError::Unsupported`). A feature ported to PostgreSQL leaves this enum; what
//! is left is the scheduled backup, which PostgreSQL's own tools do (by design), and any
//! store method not routed to PostgreSQL (`Other`, a bug to report by its name).

use std::fmt;

/// A feature the SQLite store has and the PostgreSQL store does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// The scheduled backup (PostgreSQL's own tools do it there).
    Backup,
    /// An operation not named above (the store's method).
    Other(&'static str),
}

impl Feature {
    /// The feature a store job belongs to, from its closure's type name (`std::any::type_name`:
    /// `datarun::store::MODULE::<impl ...>::METHOD::{{closure}}`).
    pub(super) fn of_job(type_name: &'static str) -> Feature {
        let op = crate::metrics::op_name(type_name);
        let module = type_name
            .split("::store::")
            .nth(1)
            .and_then(|rest| rest.split("::").next())
            .unwrap_or("");
        match (module, op) {
            ("maintenance", "backup_to") => Feature::Backup,
            _ => Feature::Other(op),
        }
    }

    /// What the feature is, in words.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Backup => "the scheduled backup (use pg_dump or pg_basebackup)",
            Feature::Other(op) => op,
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl super::Store {
    /// Whether this store has `feature`: always on SQLite; on PostgreSQL, none of `Feature`'s
    /// (those that are there left the enum). Ask this instead of which engine runs.
    pub fn supports(&self, feature: Feature) -> bool {
        let _ = feature;
        self.pg().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn jobs_name_their_feature() {
        let of = Feature::of_job;
        assert_eq!(
            of("datarun::store::maintenance::<impl datarun::store::Store>::backup_to::{{closure}}"),
            Feature::Backup
        );
        assert_eq!(
            of("datarun::store::runapp::<impl datarun::store::Store>::runapp_folds::{{closure}}"),
            Feature::Other("runapp_folds")
        );
        assert_eq!(
            of("datarun::store::folds::<impl datarun::store::Store>::log_event::{{closure}}"),
            Feature::Other("log_event")
        );
    }

    /// The 501's words: the feature, and that it is not on PostgreSQL yet.
    #[test]
    fn unsupported_says_what_is_not_on_postgres() {
        let e = StoreError::Unsupported(Feature::Backup);
        assert_eq!(
            e.to_string(),
            "the scheduled backup (use pg_dump or pg_basebackup): not on PostgreSQL yet (README \"PostgreSQL\" lists what is)"
        );
    }
}
