//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every `/api/v1` route, made by
//! `utoipa` from the declarations below and the request types (`ToSchema`, `IntoParams` on
//! them). The declarations are doc functions, one a route and method, beside (not on) the
//! handlers (`openapi/routes.rs`); the errors every route shares are added by [`CommonErrors`] from what the route
//! is (behind a token: 401, 429; a path parameter: 400, 404; a JSON body: 400, 413, 415), so a
//! declaration names only its own. A new route: one function in `routes.rs`, listed in [`ApiDoc`]
//! (tests/openapi.rs fails while the router and the document disagree).

mod routes;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use routes::*;
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
#[allow(dead_code)] // a schema only: the macros read its fields
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
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
