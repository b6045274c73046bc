//! Datasets for ML folds: CSV tables (`csv`), their column statistics and the train/test
//! comparison (`stats`), held-out splits (`split`), scores (`score`), and problem datasets' scripts, custom-split
//! files and targets (`problem`).
//!
//! **Pure**: no IO, no SQL, no clock. The store keeps what these compute; the API calls them.

pub mod csv;
pub mod problem;
pub mod score;
pub mod sklearn_split;
pub mod split;
pub mod stats;

pub use csv::{parse, parse_upload, Table};
pub use score::ScoreType;
pub use split::{held_out, HeldOut};
pub use stats::{compare, table_stats, ColumnComparison, TableStats};
