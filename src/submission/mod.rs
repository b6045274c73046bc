//! Submissions on cross-validation folds (issue #6): the pure part. A **submission** is code
//! (the files of a dataset's workflow elements) trained and tested on **submission folds**;
//! each submission fold runs as an ordinary queue fold of the ML fold image, and its phase
//! state, scores and timings are derived from that fold when it ends (`result.rs`).
//!
//! - `cv.rs`: seeded k-fold cross-validation (plain or stratified) and index checks;
//! - `npy.rs`: a reader for the `.npy` predictions the image writes;
//! - `result.rs`: phase state from a fold's outcome and `phases.json`, the traceback from its
//!   log, scores from its predictions;
//! - `leaderboard.rs`: mean and std (ddof = 1) of each score across a submission's folds.
//!
//! **Pure**: no IO, no SQL, no clock.

pub mod cv;
pub mod leaderboard;
pub mod npy;
pub mod result;

use serde::{Deserialize, Serialize};
use serde_json::json;

/// The image every submission fold runs in. Its content may change; its tag is the contract.
pub const FOLD_IMAGE: &str = "datarun/fold-python:0.1";
/// The runner inside the image (`images/fold-python/datarun-fold`).
pub const FOLD_COMMAND: &str = "datarun-fold";
/// Where the submission's files go in the fold's input directory.
pub const SUBMISSION_DIR: &str = "submission";
/// The fold's input names for the training and test tables.
pub const TRAIN_TABLE: &str = "train.csv";
pub const TEST_TABLE: &str = "test.csv";
pub const FOLD_JSON: &str = "fold.json";

/// The workflow elements the fold image knows: (element, the file it needs).
pub const ELEMENTS: [(&str, &str); 4] = [
    ("feature_extractor", "feature_extractor.py"),
    ("classifier", "classifier.py"),
    ("calibrator", "calibrator.py"),
    ("regressor", "regressor.py"),
];
const MODELS: [&str; 2] = ["classifier", "regressor"];

/// The files a submission must hold for these workflow elements, or why the elements cannot
/// run in the fold image (exactly one of classifier or regressor, optionally a feature
/// extractor, and a calibrator only with a classifier).
pub fn required_files(elements: &[String]) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    for e in elements {
        let (_, file) = ELEMENTS.iter().find(|(name, _)| name == e).ok_or_else(|| {
            let known: Vec<&str> = ELEMENTS.iter().map(|(n, _)| *n).collect();
            format!(
                "the dataset's workflow element {e:?} is not one the fold image runs ({})",
                known.join(", ")
            )
        })?;
        files.push(file.to_string());
    }
    let models = elements
        .iter()
        .filter(|e| MODELS.contains(&e.as_str()))
        .count();
    let calibrator_alone =
        elements.iter().any(|e| e == "calibrator") && !elements.iter().any(|e| e == "classifier");
    if models != 1 || calibrator_alone || files.len() != elements.len() || has_duplicates(elements)
    {
        return Err(format!(
            "the dataset's workflow elements {elements:?} cannot run: the fold image needs exactly one of classifier or regressor, optionally with feature_extractor, and calibrator only with classifier (set them when uploading the dataset)"
        ));
    }
    Ok(files)
}

fn has_duplicates(xs: &[String]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    xs.iter().any(|x| !seen.insert(x))
}

/// The phase state of a submission fold, as the original datarun named them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
pub enum Phase {
    #[serde(rename = "TODO")]
    Todo,
    #[serde(rename = "TRAINED")]
    Trained,
    #[serde(rename = "VALIDATED")]
    Validated,
    #[serde(rename = "TESTED")]
    Tested,
    #[serde(rename = "ERROR")]
    Error,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Todo,
        Phase::Trained,
        Phase::Validated,
        Phase::Tested,
        Phase::Error,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Todo => "TODO",
            Phase::Trained => "TRAINED",
            Phase::Validated => "VALIDATED",
            Phase::Tested => "TESTED",
            Phase::Error => "ERROR",
        }
    }
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// The result is final for this run: it goes to the "new results" feed.
    pub fn is_ended(self) -> bool {
        matches!(self, Phase::Validated | Phase::Tested | Phase::Error)
    }
}

/// The `fold.json` the image reads; indices are into the training table.
pub fn fold_json(
    target_column: &str,
    elements: &[String],
    train_is: &[usize],
    test_is: &[usize],
    has_test_table: bool,
) -> Vec<u8> {
    let mut fold = json!({
        "dataset": TRAIN_TABLE,
        "target_column": target_column,
        "train_is": train_is,
        "test_is": test_is,
        "workflow_elements": elements,
        "submission_dir": SUBMISSION_DIR,
    });
    if has_test_table {
        fold["test_dataset"] = json!(TEST_TABLE);
    }
    serde_json::to_vec(&fold).expect("fold.json serializes")
}

/// The files a submission to a problem dataset must hold: `<element>.py` for each workflow
/// element (the script's `train_submission` imports them; any element names work).
pub fn problem_required_files(elements: &[String]) -> Vec<String> {
    elements.iter().map(|e| format!("{e}.py")).collect()
}

/// The `fold.json` of a fold on a problem dataset: the image's problem mode calls the
/// script's `get_train_data`, `train_submission` and `test_submission`; indices are into the
/// script's training data.
pub fn problem_fold_json(
    problem: &str,
    elements: &[String],
    train_is: &[usize],
    test_is: &[usize],
) -> Vec<u8> {
    let fold = json!({
        "problem": problem,
        "data_dir": crate::dataset::problem::DATA_DIR,
        "submission_dir": SUBMISSION_DIR,
        "train_is": train_is,
        "test_is": test_is,
        "workflow_elements": elements,
    });
    serde_json::to_vec(&fold).expect("fold.json serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn required_files_follow_the_elements() {
        assert_eq!(
            required_files(&s(&["classifier"])).unwrap(),
            ["classifier.py"]
        );
        assert_eq!(
            required_files(&s(&["feature_extractor", "regressor"])).unwrap(),
            ["feature_extractor.py", "regressor.py"]
        );
        assert!(required_files(&s(&[])).unwrap_err().contains("exactly one"));
        assert!(required_files(&s(&["classifier", "regressor"])).is_err());
        assert_eq!(
            required_files(&s(&["classifier", "calibrator"])).unwrap(),
            ["classifier.py", "calibrator.py"]
        );
        assert!(required_files(&s(&["regressor", "calibrator"])).is_err());
        assert!(required_files(&s(&["calibrator"])).is_err());
        assert!(required_files(&s(&["ts_predictor"]))
            .unwrap_err()
            .contains("not one the fold image runs"));
    }

    #[test]
    fn phases_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!(!Phase::Todo.is_ended() && Phase::Error.is_ended());
    }

    #[test]
    fn fold_json_names_the_tables() {
        let v: serde_json::Value =
            serde_json::from_slice(&fold_json("y", &s(&["regressor"]), &[0, 2], &[1], true))
                .unwrap();
        assert_eq!(v["dataset"], "train.csv");
        assert_eq!(v["test_dataset"], "test.csv");
        assert_eq!(v["train_is"], json!([0, 2]));
        let v: serde_json::Value =
            serde_json::from_slice(&fold_json("y", &s(&["regressor"]), &[0], &[1], false)).unwrap();
        assert!(v.get("test_dataset").is_none());
    }
}
