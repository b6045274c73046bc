//! The declarations of the OpenAPI document: one doc function a route and method, read by
//! `utoipa`'s macros (listed in `ApiDoc`), never called. The errors every route shares are
//! added by `CommonErrors`, so each names only its own.

#![allow(dead_code)] // the doc functions are read by the macros, never called

use super::super::{
    arrays, bulk, datasets, events, folds, holds, provenance, results, submission_folds,
    submissions, sweeps, webhooks,
};
use super::{Answer, Binary, ErrorBody};
use crate::model::FoldSpec;
use crate::store::ReleaseChanges;

// ---- meta

/// Liveness and version (no token).
#[utoipa::path(get, path = "/api/v1/health", tag = "meta",
    responses((status = 200, description = "`{ok: true, version}`", body = Answer)))]
pub(super) fn health() {}

/// This document (no token; it is not secret).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI document", body = Answer)))]
pub(super) fn openapi_json() {}

// ---- folds

/// Upload a file (the raw body, streamed into the blob store); the caller now owns it.
#[utoipa::path(post, path = "/api/v1/blobs", tag = "folds",
    request_body(content = Option<Binary>, content_type = "application/octet-stream"),
    responses((status = 201, description = "`{sha256, size}`", body = Answer)))]
pub(super) fn put_blob() {}

/// Submit one fold.
#[utoipa::path(post, path = "/api/v1/folds", tag = "folds",
    request_body = FoldSpec,
    responses(
        (status = 201, description = "`{id, fold, held}`", body = Answer),
        (status = 404, description = "an input or a fold it depends on that does not exist (or is another owner's)", body = ErrorBody),
    ))]
pub(super) fn submit_fold() {}

/// One page of folds, in id order (`after`), newest first (`order=newest`, `before`), or
/// changed after a seq (`since`).
#[utoipa::path(get, path = "/api/v1/folds", tag = "folds",
    params(folds::ListQuery),
    responses(
        (status = 200, description = "`{folds, seq, next}`", body = Answer),
        (status = 403, description = "`owner` names another owner (non-admin token)", body = ErrorBody),
    ))]
pub(super) fn list_folds() {}

/// Submit folds, all or nothing.
#[utoipa::path(post, path = "/api/v1/folds/batch", tag = "folds",
    request_body = folds::Batch,
    responses(
        (status = 201, description = "`{ids, held}`", body = Answer),
        (status = 404, description = "an input or a dependency that does not exist", body = ErrorBody),
    ))]
pub(super) fn submit_batch() {}

/// The fold, its attempts, events, live progress and `why_pending`.
#[utoipa::path(get, path = "/api/v1/folds/{id}", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    responses((status = 200, description = "`{fold, attempts, events, progress, why_pending}`", body = Answer)))]
pub(super) fn show_fold() {}

/// Its log from an output offset; with `follow=1`, streamed while the fold runs.
#[utoipa::path(get, path = "/api/v1/folds/{id}/log", tag = "folds",
    params(("id" = i64, Path, description = "fold id"), folds::LogQuery),
    responses(
        (status = 200, description = "the log (headers `x-datarun-attempt`, `x-datarun-log-offset`, `x-datarun-log-skipped`)", body = String, content_type = "text/plain"),
        (status = 503, description = "too many followers and waiters at once (`serve --max-waiters`)", body = ErrorBody),
    ))]
pub(super) fn fold_log() {}

/// Why a fold runs where it does, or does not run yet.
#[utoipa::path(get, path = "/api/v1/folds/{id}/analyze", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    responses((status = 200, description = "per-step counts with reasons, `matches_empty_pool`, `place_in_line`", body = Answer)))]
pub(super) fn analyze_fold() {}

/// One output file of the fold (streamed).
#[utoipa::path(get, path = "/api/v1/folds/{id}/outputs/{name}", tag = "folds",
    params(("id" = i64, Path, description = "fold id"), ("name" = String, Path, description = "output file name")),
    responses((status = 200, description = "the file", body = Binary, content_type = "application/octet-stream")))]
pub(super) fn fold_output() {}

/// Hold a fold (kills a running attempt).
#[utoipa::path(post, path = "/api/v1/folds/{id}/hold", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    request_body(content = Option<holds::HoldBody>, description = "optional `{reason}`"),
    responses(
        (status = 200, description = "`{fold}`", body = Answer),
        (status = 409, description = "the fold has ended or is held already", body = ErrorBody),
    ))]
pub(super) fn hold_fold() {}

/// Release a held fold, optionally with new requests.
#[utoipa::path(post, path = "/api/v1/folds/{id}/release", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    request_body(content = Option<ReleaseChanges>, description = "optional new requests"),
    responses(
        (status = 200, description = "`{fold}`", body = Answer),
        (status = 409, description = "the fold is not held", body = ErrorBody),
    ))]
pub(super) fn release_fold() {}

/// Remove a fold (kills a running attempt).
#[utoipa::path(post, path = "/api/v1/folds/{id}/remove", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    responses(
        (status = 200, description = "`{fold}`", body = Answer),
        (status = 409, description = "the fold has ended already", body = ErrorBody),
    ))]
pub(super) fn remove_fold() {}

/// Hold, release or remove every fold matching a constraint.
#[utoipa::path(post, path = "/api/v1/folds/bulk/{action}", tag = "folds",
    params(("action" = String, Path, description = "`hold`, `release` or `remove`")),
    request_body(content = Option<bulk::BulkBody>, description = "the constraint: at least one of owner, queue, state, array, ids"),
    responses(
        (status = 200, description = "`{matched, changed, failed, errors, more}`", body = Answer),
        (status = 403, description = "`owner` names another owner (non-admin token)", body = ErrorBody),
    ))]
pub(super) fn bulk_action() {}

/// What produced a fold's result: image id, inputs, argv, environment (secrets redacted),
/// runner and its facts, versions, limits granted.
#[utoipa::path(get, path = "/api/v1/folds/{id}/provenance", tag = "folds",
    params(("id" = i64, Path, description = "fold id"), provenance::ProvenanceQuery),
    responses((status = 200, description = "the record", body = Answer)))]
pub(super) fn fold_provenance() {}

/// Submit a new fold from a fold's provenance record (image pinned by id, same inputs).
#[utoipa::path(post, path = "/api/v1/folds/{id}/rerun", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    request_body(content = Option<provenance::RerunBody>, description = "optional `{attempt, env}`: the record to rerun and its redacted secrets"),
    responses(
        (status = 201, description = "`{id}` of the new fold", body = Answer),
        (status = 409, description = "an input of the record is no longer stored", body = ErrorBody),
    ))]
pub(super) fn rerun_fold() {}

// ---- arrays

/// Submit an array of folds.
#[utoipa::path(post, path = "/api/v1/arrays", tag = "arrays",
    request_body = arrays::NewArray,
    responses(
        (status = 201, description = "`{array, cap, folds: [{id, index}], held}`", body = Answer),
        (status = 404, description = "an input or a dependency that does not exist", body = ErrorBody),
    ))]
pub(super) fn create_array() {}

/// An array: size, cap, counts per state.
#[utoipa::path(get, path = "/api/v1/arrays/{id}", tag = "arrays",
    params(("id" = i64, Path, description = "array id")),
    responses((status = 200, description = "`{array}`", body = Answer)))]
pub(super) fn show_array() {}

/// The fold of an array at an index.
#[utoipa::path(get, path = "/api/v1/arrays/{id}/{index}", tag = "arrays",
    params(("id" = i64, Path, description = "array id"), ("index" = i64, Path, description = "array index")),
    responses((status = 200, description = "`{fold}`", body = Answer)))]
pub(super) fn array_fold() {}

/// Submit a parameter sweep: one fold per point of a grid and/or seeded random samples.
#[utoipa::path(post, path = "/api/v1/sweeps", tag = "arrays",
    request_body = sweeps::NewSweepBody,
    responses(
        (status = 201, description = "`{sweep, cap, folds: [{id, index, params}], held}`", body = Answer),
        (status = 404, description = "an input that does not exist", body = ErrorBody),
    ))]
pub(super) fn create_sweep() {}

/// A sweep's points with their values, states and metrics; ranked by a metric when asked.
#[utoipa::path(get, path = "/api/v1/sweeps/{id}", tag = "arrays",
    params(("id" = i64, Path, description = "sweep id (its array's)"), sweeps::RankQuery),
    responses((status = 200, description = "`{sweep, points}`", body = Answer)))]
pub(super) fn show_sweep() {}

/// Drop the outputs of every ended point but the best N by a metric.
#[utoipa::path(post, path = "/api/v1/sweeps/{id}/keep", tag = "arrays",
    params(("id" = i64, Path, description = "sweep id (its array's)")),
    request_body = sweeps::KeepBody,
    responses((status = 200, description = "`{kept, dropped, blobs_deleted}`", body = Answer)))]
pub(super) fn keep_sweep() {}

// ---- queue

/// Counts per queue, owner and state.
#[utoipa::path(get, path = "/api/v1/queue", tag = "queue",
    responses((status = 200, description = "`{counts}`", body = Answer)))]
pub(super) fn queue() {}

/// Fair share: each owner's running folds and usage.
#[utoipa::path(get, path = "/api/v1/owners", tag = "queue",
    responses((status = 200, description = "`{fair_share, owners}`", body = Answer)))]
pub(super) fn owners() {}

/// The event log: a long poll, or server-sent events with `Accept: text/event-stream`.
#[utoipa::path(get, path = "/api/v1/events", tag = "queue",
    params(events::EventsQuery),
    responses(
        (status = 200, description = "`{events, seq}` (or an event stream)", body = Answer),
        (status = 503, description = "too many waiters at once (`serve --max-waiters`)", body = ErrorBody),
    ))]
pub(super) fn events_feed() {}

// ---- runners

/// Runners: slots, resources, connection state, `inventory_error`.
#[utoipa::path(get, path = "/api/v1/runners", tag = "runners",
    responses((status = 200, description = "`{runners, inventory_error}`", body = Answer)))]
pub(super) fn runners() {}

/// Admin: reload the inventory file.
#[utoipa::path(post, path = "/api/v1/runners/reload", tag = "runners",
    responses(
        (status = 200, description = "`{reloaded}`", body = Answer),
        (status = 400, description = "the inventory is invalid (file:line:key)", body = ErrorBody),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
pub(super) fn reload_runners() {}

/// Admin: scheduled maintenance jobs, next runs, recent runs.
#[utoipa::path(get, path = "/api/v1/maintenance", tag = "runners",
    responses(
        (status = 200, description = "`{jobs, recent}`", body = Answer),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
pub(super) fn maintenance() {}

/// Admin: drain a runner (no new folds).
#[utoipa::path(post, path = "/api/v1/runners/{name}/drain", tag = "runners",
    params(("name" = String, Path, description = "runner name")),
    responses(
        (status = 200, description = "`{runner, drained}`", body = Answer),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
pub(super) fn drain_runner() {}

/// Admin: resume a drained runner.
#[utoipa::path(post, path = "/api/v1/runners/{name}/resume", tag = "runners",
    params(("name" = String, Path, description = "runner name")),
    responses(
        (status = 200, description = "`{runner, drained}`", body = Answer),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
pub(super) fn resume_runner() {}

// ---- datasets

/// Create a dataset from a CSV (base64 or a blob) or from files with a problem script.
#[utoipa::path(post, path = "/api/v1/datasets", tag = "datasets",
    request_body = datasets::CreateDataset,
    responses(
        (status = 201, description = "`{dataset}`", body = Answer),
        (status = 200, description = "the same dataset exists already (same name and content)", body = Answer),
        (status = 404, description = "`table_sha256` names no blob of the caller's", body = ErrorBody),
        (status = 409, description = "another dataset has this name", body = ErrorBody),
    ))]
pub(super) fn create_dataset() {}

/// One page of datasets.
#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets",
    params(datasets::PageQuery),
    responses((status = 200, description = "`{datasets, next}`", body = Answer)))]
pub(super) fn list_datasets() {}

/// A dataset and its splits.
#[utoipa::path(get, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "`{dataset, splits}`", body = Answer)))]
pub(super) fn show_dataset() {}

/// Delete a dataset and its splits.
#[utoipa::path(delete, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses(
        (status = 200, description = "`{deleted, splits_deleted}`", body = Answer),
        (status = 409, description = "submissions use the dataset", body = ErrorBody),
    ))]
pub(super) fn delete_dataset() {}

/// A CSV dataset's table.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/table", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "the CSV", body = String, content_type = "text/csv")))]
pub(super) fn dataset_table() {}

/// A file of a problem dataset (or of one of its splits).
#[utoipa::path(get, path = "/api/v1/datasets/{id}/files/{name}", tag = "datasets",
    params(
        ("id" = i64, Path, description = "dataset id"),
        ("name" = String, Path, description = "file name"),
        datasets::FileQuery,
    ),
    responses((status = 200, description = "the file", body = Binary, content_type = "application/octet-stream")))]
pub(super) fn dataset_file() {}

/// Split a dataset into train and test rows (a problem dataset's: `custom`).
#[utoipa::path(post, path = "/api/v1/datasets/{id}/splits", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    request_body = datasets::CreateSplit,
    responses(
        (status = 201, description = "`{split, train, test}`", body = Answer),
        (status = 200, description = "the same split exists already", body = Answer),
        (status = 409, description = "a conflicting split", body = ErrorBody),
    ))]
pub(super) fn create_split() {}

/// A dataset's splits.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/splits", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "`{splits}`", body = Answer)))]
pub(super) fn list_splits() {}

/// A split with its train and test rows.
#[utoipa::path(get, path = "/api/v1/splits/{id}", tag = "datasets",
    params(("id" = i64, Path, description = "split id")),
    responses((status = 200, description = "`{split, train, test}`", body = Answer)))]
pub(super) fn show_split() {}

/// Score predictions against the truth (no data stored).
#[utoipa::path(post, path = "/api/v1/scores", tag = "datasets",
    request_body = datasets::ScoreRequest,
    responses((status = 200, description = "`{scores}`", body = Answer)))]
pub(super) fn scores() {}

/// A leaderboard of a dataset's submissions.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/leaderboard", tag = "submissions",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "`{leaderboard}`", body = Answer)))]
pub(super) fn leaderboard() {}

// ---- submissions

/// Submit code to train and test on a dataset's folds.
#[utoipa::path(post, path = "/api/v1/submissions", tag = "submissions",
    request_body = submissions::CreateSubmission,
    responses(
        (status = 201, description = "`{submission, folds}`", body = Answer),
        (status = 404, description = "no such dataset or split", body = ErrorBody),
        (status = 409, description = "a submission of this name exists", body = ErrorBody),
    ))]
pub(super) fn create_submission() {}

/// One page of submissions.
#[utoipa::path(get, path = "/api/v1/submissions", tag = "submissions",
    params(submissions::ListQuery),
    responses((status = 200, description = "`{submissions, next}`", body = Answer)))]
pub(super) fn list_submissions() {}

/// A submission and its folds.
#[utoipa::path(get, path = "/api/v1/submissions/{id}", tag = "submissions",
    params(("id" = i64, Path, description = "submission id")),
    responses((status = 200, description = "`{submission, folds}`", body = Answer)))]
pub(super) fn show_submission() {}

/// Run a submission's folds again (optionally with new files).
#[utoipa::path(post, path = "/api/v1/submissions/{id}/resubmit", tag = "submissions",
    params(("id" = i64, Path, description = "submission id")),
    request_body(content = Option<submissions::Resubmit>, description = "optional `{force, files, folds}`"),
    responses(
        (status = 200, description = "`{submission, folds}`", body = Answer),
        (status = 409, description = "folds still running", body = ErrorBody),
    ))]
pub(super) fn resubmit() {}

/// Add folds to a submission.
#[utoipa::path(post, path = "/api/v1/submissions/{id}/folds", tag = "submissions",
    params(("id" = i64, Path, description = "submission id")),
    request_body = submission_folds::AddFolds,
    responses((status = 201, description = "`{folds}`", body = Answer)))]
pub(super) fn add_submission_folds() {}

/// A submission fold: its state, scores, queue fold.
#[utoipa::path(get, path = "/api/v1/submission-folds/{id}", tag = "submissions",
    params(("id" = i64, Path, description = "submission fold id")),
    responses((status = 200, description = "`{fold}`", body = Answer)))]
pub(super) fn show_submission_fold() {}

/// A submission fold's predictions (`.npy`).
#[utoipa::path(get, path = "/api/v1/submission-folds/{id}/predictions/{phase}", tag = "submissions",
    params(
        ("id" = i64, Path, description = "submission fold id"),
        ("phase" = String, Path, description = "`train` or `test`"),
    ),
    responses((status = 200, description = "the `.npy` file", body = Binary, content_type = "application/octet-stream")))]
pub(super) fn predictions() {}

/// Results not handed out yet, handed out now, once.
#[utoipa::path(post, path = "/api/v1/results/new", tag = "submissions",
    request_body(content = Option<results::NewResults>, description = "optional `{dataset_id, limit}`"),
    responses((status = 200, description = "`{results}`", body = Answer)))]
pub(super) fn new_results() {}

/// Submission folds by id, whatever their state.
#[utoipa::path(post, path = "/api/v1/results/list", tag = "submissions",
    request_body = results::ListResults,
    responses((status = 200, description = "`{results, missing}`", body = Answer)))]
pub(super) fn list_results() {}

// ---- webhooks

/// The caller's webhooks (an admin's: everyone's) with their delivery state.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    params(webhooks::ListQuery),
    responses((status = 200, description = "`{webhooks, next}`", body = Answer)))]
pub(super) fn list_webhooks() {}

/// The secret of the caller's token that signs its webhooks (`X-Datarun-Signature`).
#[utoipa::path(get, path = "/api/v1/webhook-secret", tag = "webhooks",
    responses((status = 200, description = "`{token, secret}`", body = Answer)))]
pub(super) fn webhook_secret() {}
