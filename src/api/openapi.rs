//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every `/api/v1` route, made by
//! `utoipa` from the declarations below and the request types (`ToSchema`, `IntoParams` on
//! them). The declarations are doc functions, one a route and method, beside (not on) the
//! handlers; the errors every route shares are added by [`CommonErrors`] from what the route
//! is (behind a token: 401, 429; a path parameter: 400, 404; a JSON body: 400, 413, 415), so a
//! declaration names only its own. A new route: one function here, listed in [`ApiDoc`]
//! (tests/openapi.rs fails while the router and the document disagree).

#![allow(dead_code)] // the doc functions are read by the macros, never called

use super::{
    arrays, bulk, datasets, events, folds, provenance, results, submission_folds, submissions,
    sweeps, webhooks,
};
use crate::model::FoldSpec;
use crate::store::ReleaseChanges;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The routes under `/api/v1` that need no token.
const PUBLIC: [&str; 2] = ["/api/v1/health", "/api/v1/openapi.json"];

/// `GET /api/v1/openapi.json`: made once, then served as it is.
pub async fn document() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let text = DOC.get_or_init(|| ApiDoc::openapi().to_json().expect("the document is JSON"));
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "datarun",
        description = "An HTCondor-style batch scheduler for machine-learning folds. Every request but `/health` and `/openapi.json` carries `Authorization: Bearer TOKEN`; every error is JSON, `{\"error\": {\"code\", \"message\"}}`. See the README's \"REST API\" section."
    ),
    paths(
        health, openapi_json,
        put_blob, submit_fold, list_folds, submit_batch, show_fold, fold_log, analyze_fold,
        fold_output, hold_fold, release_fold, remove_fold, bulk_action, fold_provenance,
        rerun_fold,
        create_array, show_array, array_fold, create_sweep, show_sweep, keep_sweep,
        queue, owners, events_feed, runners, reload_runners, maintenance, drain_runner,
        resume_runner,
        create_dataset, list_datasets, show_dataset, delete_dataset, dataset_table,
        dataset_file, create_split, list_splits, show_split, scores,
        create_submission, list_submissions, show_submission, resubmit, add_submission_folds,
        show_submission_fold, predictions, new_results, list_results, leaderboard,
        list_webhooks, webhook_secret,
    ),
    components(schemas(ErrorBody, ErrorDetail, Answer, Binary)),
    modifiers(&CommonErrors),
    tags(
        (name = "meta", description = "liveness and this document"),
        (name = "folds", description = "blobs, folds, their logs, outputs and holds"),
        (name = "arrays", description = "fold arrays and parameter sweeps"),
        (name = "queue", description = "the queue, owners, events"),
        (name = "runners", description = "runners and maintenance (changes: admin tokens)"),
        (name = "datasets", description = "datasets, splits and scores"),
        (name = "submissions", description = "submissions, their folds, results and the leaderboard"),
        (name = "webhooks", description = "webhooks and the secret that signs them"),
    )
)]
struct ApiDoc;

/// Every error answer: `{"error": {"code": "bad_request", "message": "..."}}`.
#[derive(ToSchema)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `too_many_requests`, `unavailable`, ...
    code: String,
    /// What went wrong and what to do, for a person.
    message: String,
}

/// A JSON object answer; its fields are described with the route and in the README.
struct Answer;

impl PartialSchema for Answer {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}
impl ToSchema for Answer {}

/// Bytes as they are (a file, a log).
struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}
impl ToSchema for Binary {}

/// Adds the bearer scheme, and to each operation the errors that follow from what it is.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            "bearer".into(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a token from `datarun token create NAME`"))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                optional_body(op);
                add_errors(op, path, public);
            }
        }
    }
}

/// An `Option<T>` body is declared as `T`, not required: no body (or white space) is the
/// defaults, while a JSON `null` is refused like any body that is not an object.
fn optional_body(op: &mut Operation) {
    let Some(body) = op.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one))) = &content.schema else {
            continue;
        };
        let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
        if let [null, inner] = one.items.as_slice() {
            if is_null(null) {
                content.schema = Some(inner.clone());
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
    }
}

fn add_errors(op: &mut Operation, path: &str, public: bool) {
    let mut errors: Vec<(u16, &str)> = Vec::new();
    if public {
        // No token asked: an empty requirement.
        op.security = Some(vec![SecurityRequirement::default()]);
    } else {
        errors.push((401, "no token, or an unknown, expired or revoked one"));
        errors.push((
            429,
            "over the token's rate limit (`Retry-After` says when to retry)",
        ));
    }
    if path.contains('{') {
        errors.push((
            400,
            "a path parameter that does not parse, or a bad request",
        ));
        errors.push((
            404,
            "no such resource, or another owner's (as if it were missing)",
        ));
    }
    if let Some(body) = &op.request_body {
        errors.push((400, "a malformed body, an unknown field or a bad value"));
        errors.push((
            413,
            "the body, or a field of it, over its limit (README \"Limits\")",
        ));
        let json_required = body.content.contains_key("application/json")
            && matches!(body.required, Some(utoipa::openapi::Required::True));
        if json_required {
            errors.push((415, "not sent as `Content-Type: application/json`"));
        }
    }
    if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        errors.push((400, "a parameter that does not parse or is out of range"));
    }
    for (status, what) in errors {
        let key = status.to_string();
        op.responses
            .responses
            .entry(key)
            .or_insert_with(|| error_response(what));
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

// ---- meta

/// Liveness and version (no token).
#[utoipa::path(get, path = "/api/v1/health", tag = "meta",
    responses((status = 200, description = "`{ok: true, version}`", body = Answer)))]
fn health() {}

/// This document (no token; it is not secret).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI document", body = Answer)))]
fn openapi_json() {}

// ---- folds

/// Upload a file (the raw body, streamed into the blob store); the caller now owns it.
#[utoipa::path(post, path = "/api/v1/blobs", tag = "folds",
    request_body(content = Option<Binary>, content_type = "application/octet-stream"),
    responses((status = 201, description = "`{sha256, size}`", body = Answer)))]
fn put_blob() {}

/// Submit one fold.
#[utoipa::path(post, path = "/api/v1/folds", tag = "folds",
    request_body = FoldSpec,
    responses(
        (status = 201, description = "`{id, fold, held}`", body = Answer),
        (status = 404, description = "an input or a fold it depends on that does not exist (or is another owner's)", body = ErrorBody),
    ))]
fn submit_fold() {}

/// One page of folds, in id order (`after`), newest first (`order=newest`, `before`), or
/// changed after a seq (`since`).
#[utoipa::path(get, path = "/api/v1/folds", tag = "folds",
    params(folds::ListQuery),
    responses(
        (status = 200, description = "`{folds, seq, next}`", body = Answer),
        (status = 403, description = "`owner` names another owner (non-admin token)", body = ErrorBody),
    ))]
fn list_folds() {}

/// Submit folds, all or nothing.
#[utoipa::path(post, path = "/api/v1/folds/batch", tag = "folds",
    request_body = folds::Batch,
    responses(
        (status = 201, description = "`{ids, held}`", body = Answer),
        (status = 404, description = "an input or a dependency that does not exist", body = ErrorBody),
    ))]
fn submit_batch() {}

/// The fold, its attempts, events, live progress and `why_pending`.
#[utoipa::path(get, path = "/api/v1/folds/{id}", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    responses((status = 200, description = "`{fold, attempts, events, progress, why_pending}`", body = Answer)))]
fn show_fold() {}

/// Its log from an output offset; with `follow=1`, streamed while the fold runs.
#[utoipa::path(get, path = "/api/v1/folds/{id}/log", tag = "folds",
    params(("id" = i64, Path, description = "fold id"), folds::LogQuery),
    responses(
        (status = 200, description = "the log (headers `x-datarun-attempt`, `x-datarun-log-offset`, `x-datarun-log-skipped`)", body = String, content_type = "text/plain"),
        (status = 503, description = "too many followers and waiters at once (`serve --max-waiters`)", body = ErrorBody),
    ))]
fn fold_log() {}

/// Why a fold runs where it does, or does not run yet.
#[utoipa::path(get, path = "/api/v1/folds/{id}/analyze", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    responses((status = 200, description = "per-step counts with reasons, `matches_empty_pool`, `place_in_line`", body = Answer)))]
fn analyze_fold() {}

/// One output file of the fold (streamed).
#[utoipa::path(get, path = "/api/v1/folds/{id}/outputs/{name}", tag = "folds",
    params(("id" = i64, Path, description = "fold id"), ("name" = String, Path, description = "output file name")),
    responses((status = 200, description = "the file", body = Binary, content_type = "application/octet-stream")))]
fn fold_output() {}

/// Hold a fold (kills a running attempt).
#[utoipa::path(post, path = "/api/v1/folds/{id}/hold", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    request_body(content = Option<folds::HoldBody>, description = "optional `{reason}`"),
    responses(
        (status = 200, description = "`{fold}`", body = Answer),
        (status = 409, description = "the fold has ended or is held already", body = ErrorBody),
    ))]
fn hold_fold() {}

/// Release a held fold, optionally with new requests.
#[utoipa::path(post, path = "/api/v1/folds/{id}/release", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    request_body(content = Option<ReleaseChanges>, description = "optional new requests"),
    responses(
        (status = 200, description = "`{fold}`", body = Answer),
        (status = 409, description = "the fold is not held", body = ErrorBody),
    ))]
fn release_fold() {}

/// Remove a fold (kills a running attempt).
#[utoipa::path(post, path = "/api/v1/folds/{id}/remove", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    responses(
        (status = 200, description = "`{fold}`", body = Answer),
        (status = 409, description = "the fold has ended already", body = ErrorBody),
    ))]
fn remove_fold() {}

/// Hold, release or remove every fold matching a constraint.
#[utoipa::path(post, path = "/api/v1/folds/bulk/{action}", tag = "folds",
    params(("action" = String, Path, description = "`hold`, `release` or `remove`")),
    request_body(content = Option<bulk::BulkBody>, description = "the constraint: at least one of owner, queue, state, array, ids"),
    responses(
        (status = 200, description = "`{matched, changed, failed, errors, more}`", body = Answer),
        (status = 403, description = "`owner` names another owner (non-admin token)", body = ErrorBody),
    ))]
fn bulk_action() {}

/// What produced a fold's result: image id, inputs, argv, environment (secrets redacted),
/// runner and its facts, versions, limits granted.
#[utoipa::path(get, path = "/api/v1/folds/{id}/provenance", tag = "folds",
    params(("id" = i64, Path, description = "fold id"), provenance::ProvenanceQuery),
    responses((status = 200, description = "the record", body = Answer)))]
fn fold_provenance() {}

/// Submit a new fold from a fold's provenance record (image pinned by id, same inputs).
#[utoipa::path(post, path = "/api/v1/folds/{id}/rerun", tag = "folds",
    params(("id" = i64, Path, description = "fold id")),
    request_body(content = Option<provenance::RerunBody>, description = "optional `{attempt, env}`: the record to rerun and its redacted secrets"),
    responses(
        (status = 201, description = "`{id}` of the new fold", body = Answer),
        (status = 409, description = "an input of the record is no longer stored", body = ErrorBody),
    ))]
fn rerun_fold() {}

// ---- arrays

/// Submit an array of folds.
#[utoipa::path(post, path = "/api/v1/arrays", tag = "arrays",
    request_body = arrays::NewArray,
    responses(
        (status = 201, description = "`{array, cap, folds: [{id, index}], held}`", body = Answer),
        (status = 404, description = "an input or a dependency that does not exist", body = ErrorBody),
    ))]
fn create_array() {}

/// An array: size, cap, counts per state.
#[utoipa::path(get, path = "/api/v1/arrays/{id}", tag = "arrays",
    params(("id" = i64, Path, description = "array id")),
    responses((status = 200, description = "`{array}`", body = Answer)))]
fn show_array() {}

/// The fold of an array at an index.
#[utoipa::path(get, path = "/api/v1/arrays/{id}/{index}", tag = "arrays",
    params(("id" = i64, Path, description = "array id"), ("index" = i64, Path, description = "array index")),
    responses((status = 200, description = "`{fold}`", body = Answer)))]
fn array_fold() {}

/// Submit a parameter sweep: one fold per point of a grid and/or seeded random samples.
#[utoipa::path(post, path = "/api/v1/sweeps", tag = "arrays",
    request_body = sweeps::NewSweepBody,
    responses(
        (status = 201, description = "`{sweep, cap, folds: [{id, index, params}], held}`", body = Answer),
        (status = 404, description = "an input that does not exist", body = ErrorBody),
    ))]
fn create_sweep() {}

/// A sweep's points with their values, states and metrics; ranked by a metric when asked.
#[utoipa::path(get, path = "/api/v1/sweeps/{id}", tag = "arrays",
    params(("id" = i64, Path, description = "sweep id (its array's)"), sweeps::RankQuery),
    responses((status = 200, description = "`{sweep, points}`", body = Answer)))]
fn show_sweep() {}

/// Drop the outputs of every ended point but the best N by a metric.
#[utoipa::path(post, path = "/api/v1/sweeps/{id}/keep", tag = "arrays",
    params(("id" = i64, Path, description = "sweep id (its array's)")),
    request_body = sweeps::KeepBody,
    responses((status = 200, description = "`{kept, dropped, blobs_deleted}`", body = Answer)))]
fn keep_sweep() {}

// ---- queue

/// Counts per queue, owner and state.
#[utoipa::path(get, path = "/api/v1/queue", tag = "queue",
    responses((status = 200, description = "`{counts}`", body = Answer)))]
fn queue() {}

/// Fair share: each owner's running folds and usage.
#[utoipa::path(get, path = "/api/v1/owners", tag = "queue",
    responses((status = 200, description = "`{fair_share, owners}`", body = Answer)))]
fn owners() {}

/// The event log: a long poll, or server-sent events with `Accept: text/event-stream`.
#[utoipa::path(get, path = "/api/v1/events", tag = "queue",
    params(events::EventsQuery),
    responses(
        (status = 200, description = "`{events, seq}` (or an event stream)", body = Answer),
        (status = 503, description = "too many waiters at once (`serve --max-waiters`)", body = ErrorBody),
    ))]
fn events_feed() {}

// ---- runners

/// Runners: slots, resources, connection state, `inventory_error`.
#[utoipa::path(get, path = "/api/v1/runners", tag = "runners",
    responses((status = 200, description = "`{runners, inventory_error}`", body = Answer)))]
fn runners() {}

/// Admin: reload the inventory file.
#[utoipa::path(post, path = "/api/v1/runners/reload", tag = "runners",
    responses(
        (status = 200, description = "`{reloaded}`", body = Answer),
        (status = 400, description = "the inventory is invalid (file:line:key)", body = ErrorBody),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
fn reload_runners() {}

/// Admin: scheduled maintenance jobs, next runs, recent runs.
#[utoipa::path(get, path = "/api/v1/maintenance", tag = "runners",
    responses(
        (status = 200, description = "`{jobs, recent}`", body = Answer),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
fn maintenance() {}

/// Admin: drain a runner (no new folds).
#[utoipa::path(post, path = "/api/v1/runners/{name}/drain", tag = "runners",
    params(("name" = String, Path, description = "runner name")),
    responses(
        (status = 200, description = "`{runner, drained}`", body = Answer),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
fn drain_runner() {}

/// Admin: resume a drained runner.
#[utoipa::path(post, path = "/api/v1/runners/{name}/resume", tag = "runners",
    params(("name" = String, Path, description = "runner name")),
    responses(
        (status = 200, description = "`{runner, drained}`", body = Answer),
        (status = 403, description = "not an admin token", body = ErrorBody),
    ))]
fn resume_runner() {}

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
fn create_dataset() {}

/// One page of datasets.
#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets",
    params(datasets::PageQuery),
    responses((status = 200, description = "`{datasets, next}`", body = Answer)))]
fn list_datasets() {}

/// A dataset and its splits.
#[utoipa::path(get, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "`{dataset, splits}`", body = Answer)))]
fn show_dataset() {}

/// Delete a dataset and its splits.
#[utoipa::path(delete, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses(
        (status = 200, description = "`{deleted, splits_deleted}`", body = Answer),
        (status = 409, description = "submissions use the dataset", body = ErrorBody),
    ))]
fn delete_dataset() {}

/// A CSV dataset's table.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/table", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "the CSV", body = String, content_type = "text/csv")))]
fn dataset_table() {}

/// A file of a problem dataset (or of one of its splits).
#[utoipa::path(get, path = "/api/v1/datasets/{id}/files/{name}", tag = "datasets",
    params(
        ("id" = i64, Path, description = "dataset id"),
        ("name" = String, Path, description = "file name"),
        datasets::FileQuery,
    ),
    responses((status = 200, description = "the file", body = Binary, content_type = "application/octet-stream")))]
fn dataset_file() {}

/// Split a dataset into train and test rows (a problem dataset's: `custom`).
#[utoipa::path(post, path = "/api/v1/datasets/{id}/splits", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    request_body = datasets::CreateSplit,
    responses(
        (status = 201, description = "`{split, train, test}`", body = Answer),
        (status = 200, description = "the same split exists already", body = Answer),
        (status = 409, description = "a conflicting split", body = ErrorBody),
    ))]
fn create_split() {}

/// A dataset's splits.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/splits", tag = "datasets",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "`{splits}`", body = Answer)))]
fn list_splits() {}

/// A split with its train and test rows.
#[utoipa::path(get, path = "/api/v1/splits/{id}", tag = "datasets",
    params(("id" = i64, Path, description = "split id")),
    responses((status = 200, description = "`{split, train, test}`", body = Answer)))]
fn show_split() {}

/// Score predictions against the truth (no data stored).
#[utoipa::path(post, path = "/api/v1/scores", tag = "datasets",
    request_body = datasets::ScoreRequest,
    responses((status = 200, description = "`{scores}`", body = Answer)))]
fn scores() {}

/// A leaderboard of a dataset's submissions.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/leaderboard", tag = "submissions",
    params(("id" = i64, Path, description = "dataset id")),
    responses((status = 200, description = "`{leaderboard}`", body = Answer)))]
fn leaderboard() {}

// ---- submissions

/// Submit code to train and test on a dataset's folds.
#[utoipa::path(post, path = "/api/v1/submissions", tag = "submissions",
    request_body = submissions::CreateSubmission,
    responses(
        (status = 201, description = "`{submission, folds}`", body = Answer),
        (status = 404, description = "no such dataset or split", body = ErrorBody),
        (status = 409, description = "a submission of this name exists", body = ErrorBody),
    ))]
fn create_submission() {}

/// One page of submissions.
#[utoipa::path(get, path = "/api/v1/submissions", tag = "submissions",
    params(submissions::ListQuery),
    responses((status = 200, description = "`{submissions, next}`", body = Answer)))]
fn list_submissions() {}

/// A submission and its folds.
#[utoipa::path(get, path = "/api/v1/submissions/{id}", tag = "submissions",
    params(("id" = i64, Path, description = "submission id")),
    responses((status = 200, description = "`{submission, folds}`", body = Answer)))]
fn show_submission() {}

/// Run a submission's folds again (optionally with new files).
#[utoipa::path(post, path = "/api/v1/submissions/{id}/resubmit", tag = "submissions",
    params(("id" = i64, Path, description = "submission id")),
    request_body(content = Option<submissions::Resubmit>, description = "optional `{force, files, folds}`"),
    responses(
        (status = 200, description = "`{submission, folds}`", body = Answer),
        (status = 409, description = "folds still running", body = ErrorBody),
    ))]
fn resubmit() {}

/// Add folds to a submission.
#[utoipa::path(post, path = "/api/v1/submissions/{id}/folds", tag = "submissions",
    params(("id" = i64, Path, description = "submission id")),
    request_body = submission_folds::AddFolds,
    responses((status = 201, description = "`{folds}`", body = Answer)))]
fn add_submission_folds() {}

/// A submission fold: its state, scores, queue fold.
#[utoipa::path(get, path = "/api/v1/submission-folds/{id}", tag = "submissions",
    params(("id" = i64, Path, description = "submission fold id")),
    responses((status = 200, description = "`{fold}`", body = Answer)))]
fn show_submission_fold() {}

/// A submission fold's predictions (`.npy`).
#[utoipa::path(get, path = "/api/v1/submission-folds/{id}/predictions/{phase}", tag = "submissions",
    params(
        ("id" = i64, Path, description = "submission fold id"),
        ("phase" = String, Path, description = "`train` or `test`"),
    ),
    responses((status = 200, description = "the `.npy` file", body = Binary, content_type = "application/octet-stream")))]
fn predictions() {}

/// Results not handed out yet, handed out now, once.
#[utoipa::path(post, path = "/api/v1/results/new", tag = "submissions",
    request_body(content = Option<results::NewResults>, description = "optional `{dataset_id, limit}`"),
    responses((status = 200, description = "`{results}`", body = Answer)))]
fn new_results() {}

/// Submission folds by id, whatever their state.
#[utoipa::path(post, path = "/api/v1/results/list", tag = "submissions",
    request_body = results::ListResults,
    responses((status = 200, description = "`{results, missing}`", body = Answer)))]
fn list_results() {}

// ---- webhooks

/// The caller's webhooks (an admin's: everyone's) with their delivery state.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    params(webhooks::ListQuery),
    responses((status = 200, description = "`{webhooks, next}`", body = Answer)))]
fn list_webhooks() {}

/// The secret of the caller's token that signs its webhooks (`X-Datarun-Signature`).
#[utoipa::path(get, path = "/api/v1/webhook-secret", tag = "webhooks",
    responses((status = 200, description = "`{token, secret}`", body = Answer)))]
fn webhook_secret() {}
