//! What every fold of a submission shares, by dataset kind: the inputs besides the
//! submission's files (a CSV dataset's training and test tables; a problem dataset's files
//! with its custom split's files under `data/`), how many training rows its indices address,
//! the target of each training row (for stratified CV), and its `fold.json`.

use super::datasets::blocking;
use super::problems;
use super::{ApiError, ApiState};
use crate::dataset::{self, problem::DATA_DIR};
use crate::model::InputRef;
use crate::store::{sha256_hex, DatasetRecord, SplitId};
use crate::submission::{self, SUBMISSION_DIR};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

enum Mode {
    Table { target: String, has_test: bool },
    Problem { script: String },
}

pub(super) struct Layout {
    /// Inputs every fold gets besides the submission's files and `fold.json`.
    pub base: Vec<InputRef>,
    /// Blobs `base` adds (the tables cut from a CSV dataset); a problem dataset's are stored.
    pub blobs: Vec<Vec<u8>>,
    /// How many rows the fold indices address.
    pub n_train: usize,
    /// The target of each of those rows, for stratified CV.
    pub strata: Vec<Option<String>>,
    mode: Mode,
    elements: Vec<String>,
}

/// The files a submission to `d` must hold.
pub(super) fn required_files(d: &DatasetRecord) -> Result<Vec<String>, String> {
    match d.problem {
        Some(_) => Ok(submission::problem_required_files(&d.workflow_elements)),
        None => submission::required_files(&d.workflow_elements),
    }
}

impl Layout {
    pub async fn new(s: &ApiState, d: &DatasetRecord, split: Option<SplitId>) -> ApiResult<Layout> {
        match &d.problem {
            Some(script) => Self::problem(s, d, script, split).await,
            None => Self::table(s, d, split).await,
        }
    }

    async fn problem(
        s: &ApiState,
        d: &DatasetRecord,
        script: &str,
        split: Option<SplitId>,
    ) -> ApiResult<Layout> {
        let Some(split) = split else {
            return Err(ApiError::bad_request(format!(
                "dataset {} has a problem script: give split_id, a custom split (POST {{\"custom\": true}} to /api/v1/datasets/{}/splits)",
                d.id, d.id
            )));
        };
        problems::settle_splits(s).await?;
        let (record, _, _) = s.store.split(split).await?;
        check_owner(d, record.dataset_id, split)?;
        problems::usable_split(s, &record).await?;
        let truth = problems::truth(s, &record).await?;
        let mut files: BTreeMap<&String, &String> = d.files.iter().collect();
        files.extend(record.files.iter());
        let base = files
            .into_iter()
            .map(|(name, sha)| InputRef {
                name: format!("{DATA_DIR}/{name}"),
                sha256: sha.clone(),
            })
            .collect();
        Ok(Layout {
            base,
            blobs: Vec::new(),
            n_train: truth.y_train.len(),
            strata: truth.y_train,
            mode: Mode::Problem {
                script: script.to_string(),
            },
            elements: d.workflow_elements.clone(),
        })
    }

    async fn table(s: &ApiState, d: &DatasetRecord, split: Option<SplitId>) -> ApiResult<Layout> {
        let rows = match split {
            None => None,
            Some(id) => {
                let (rec, train, test) = s.store.split(id).await?;
                check_owner(d, rec.dataset_id, id)?;
                Some((train, test))
            }
        };
        let table = s.store.dataset_table(d.id).await?;
        let target = d.target_column.clone();
        let (train_csv, test_csv, strata) = blocking(move || {
            let parsed = dataset::parse(&table).map_err(|e| format!("the stored table: {e}"))?;
            let col = parsed
                .column(&target)
                .ok_or("the target column is missing")?;
            let (train_rows, train_csv, test_csv) = match &rows {
                None => ((0..parsed.rows).collect::<Vec<_>>(), table.clone(), None),
                Some((train, test)) => (
                    train.clone(),
                    dataset::csv::select_rows(&table, train)?,
                    Some(dataset::csv::select_rows(&table, test)?),
                ),
            };
            let strata = train_rows.iter().map(|&r| col.text(r)).collect::<Vec<_>>();
            Ok::<_, String>((train_csv, test_csv, strata))
        })
        .await?
        .map_err(ApiError::bad_request)?;
        let mut base = vec![InputRef {
            name: submission::TRAIN_TABLE.into(),
            sha256: sha256_hex(&train_csv),
        }];
        if let Some(t) = &test_csv {
            base.push(InputRef {
                name: submission::TEST_TABLE.into(),
                sha256: sha256_hex(t),
            });
        }
        let has_test = test_csv.is_some();
        let mut blobs = vec![train_csv];
        blobs.extend(test_csv);
        Ok(Layout {
            base,
            blobs,
            n_train: strata.len(),
            strata,
            mode: Mode::Table {
                target: d.target_column.clone(),
                has_test,
            },
            elements: d.workflow_elements.clone(),
        })
    }

    pub fn fold_json(&self, train_is: &[usize], test_is: &[usize]) -> Vec<u8> {
        match &self.mode {
            Mode::Table { target, has_test } => {
                submission::fold_json(target, &self.elements, train_is, test_is, *has_test)
            }
            Mode::Problem { script } => {
                submission::problem_fold_json(script, &self.elements, train_is, test_is)
            }
        }
    }
}

fn check_owner(d: &DatasetRecord, owner: i64, split: SplitId) -> ApiResult<()> {
    if owner != d.id {
        return Err(ApiError::bad_request(format!(
            "split_id: split {split} belongs to dataset {owner}, not {}",
            d.id
        )));
    }
    Ok(())
}

/// A fold's inputs: the shared ones, the submission's files under `submission/`, `fold.json`.
pub(super) fn fold_inputs(
    base: &[InputRef],
    files: &BTreeMap<String, String>,
    fold_json_sha: &str,
) -> Vec<InputRef> {
    let mut v = base.to_vec();
    v.extend(files.iter().map(|(name, sha)| InputRef {
        name: format!("{SUBMISSION_DIR}/{name}"),
        sha256: sha.clone(),
    }));
    v.push(InputRef {
        name: submission::FOLD_JSON.into(),
        sha256: fold_json_sha.into(),
    });
    v
}
