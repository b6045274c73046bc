//! What every fold of a submission shares, by dataset kind: the inputs besides the
//! submission's files (a CSV dataset's training and test tables; a problem dataset's files
//! with its custom split's files under `data/`), how many training rows its indices address,
//! the target of each training row (for stratified CV), and its `fold.json`; the queue fold
//! of the fold image a submission fold (or a custom split) runs as (`image_fold`, `build_fold`).

use super::{blocking, splits, Result, WorkflowError};
use crate::dataset::{self, problem::DATA_DIR};
use crate::model::{FoldSpec, InputRef, Priority, Resources, DEFAULT_QUEUE};
use crate::store::{sha256_hex, DatasetRecord, NewSubmissionFold, SplitId, Store};
use crate::submission::{self, SUBMISSION_DIR};
use std::collections::BTreeMap;

enum Mode {
    Table { target: String, has_test: bool },
    Problem { script: String },
}

pub struct Layout {
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
pub fn required_files(d: &DatasetRecord) -> std::result::Result<Vec<String>, String> {
    match d.problem {
        Some(_) => Ok(submission::problem_required_files(&d.workflow_elements)),
        None => submission::required_files(&d.workflow_elements),
    }
}

impl Layout {
    pub async fn new(store: &Store, d: &DatasetRecord, split: Option<SplitId>) -> Result<Layout> {
        match &d.problem {
            Some(script) => Self::problem(store, d, script, split).await,
            None => Self::table(store, d, split).await,
        }
    }

    async fn problem(
        store: &Store,
        d: &DatasetRecord,
        script: &str,
        split: Option<SplitId>,
    ) -> Result<Layout> {
        let Some(split) = split else {
            return Err(WorkflowError::Invalid(format!(
                "dataset {} has a problem script: give split_id, a custom split (POST {{\"custom\": true}} to /api/v1/datasets/{}/splits)",
                d.id, d.id
            )));
        };
        let (record, _, _) = store.split(split).await?;
        check_owner(d, record.dataset_id, split)?;
        splits::usable_split(store, &record).await?;
        let truth = splits::split_truth(store, &record).await?;
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

    async fn table(store: &Store, d: &DatasetRecord, split: Option<SplitId>) -> Result<Layout> {
        let rows = match split {
            None => None,
            Some(id) => {
                let (rec, train, test) = store.split(id).await?;
                check_owner(d, rec.dataset_id, id)?;
                Some((train, test))
            }
        };
        let table = store.dataset_table(d.id).await?;
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
        .map_err(WorkflowError::Invalid)?;
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

fn check_owner(d: &DatasetRecord, owner: i64, split: SplitId) -> Result<()> {
    if owner != d.id {
        return Err(WorkflowError::Invalid(format!(
            "split_id: split {split} belongs to dataset {owner}, not {}",
            d.id
        )));
    }
    Ok(())
}

/// A fold's inputs: the shared ones, the submission's files under `submission/`, `fold.json`.
pub fn fold_inputs(
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

/// A queue fold of the fold image running `command` (no inputs yet) with the defaults of
/// submission folds: default resources and queue, no time limits, no retries. Callers set
/// what differs.
pub fn image_fold(command: &str, priority: Priority) -> FoldSpec {
    FoldSpec {
        command: vec![command.into()],
        image: Some(submission::FOLD_IMAGE.into()),
        inputs: Vec::new(),
        env: BTreeMap::new(),
        resources: default_resources(),
        soft_time_limit: None,
        hard_time_limit: None,
        queue: DEFAULT_QUEUE.into(),
        priority,
        max_retries: 0,
        requirements: None,
        rank: None,
        after: Vec::new(),
        inputs_from: Vec::new(),
        webhook: None,
    }
}

pub fn default_resources() -> Resources {
    Resources {
        cpus: 1.0,
        memory: 1 << 30,
        gpus: 0,
    }
}

/// One submission fold (its queue fold from `template`, not held) and the blobs it adds
/// (fold.json and its indices).
pub fn build_fold(
    layout: &Layout,
    file_shas: &BTreeMap<String, String>,
    template: &FoldSpec,
    fold_index: i64,
    train_is: &[usize],
    test_is: &[usize],
    client_id: Option<String>,
) -> (NewSubmissionFold, Vec<Vec<u8>>) {
    let fold_json = layout.fold_json(train_is, test_is);
    let tr = serde_json::to_vec(train_is).expect("indices serialize");
    let te = serde_json::to_vec(test_is).expect("indices serialize");
    let mut spec = template.clone();
    spec.inputs = fold_inputs(&layout.base, file_shas, &sha256_hex(&fold_json));
    let fold = NewSubmissionFold {
        fold_index,
        client_id,
        train_sha256: sha256_hex(&tr),
        test_sha256: sha256_hex(&te),
        train_rows: train_is.len() as u64,
        test_rows: test_is.len() as u64,
        spec,
        held: None,
    };
    (fold, vec![fold_json, tr, te])
}
