//! The REST API under `/api/v1` (axum): blobs, folds, queue, runners, datasets, splits and
//! scores. Bearer-token auth, then a per-token rate limit (429); every error is JSON with a
//! message (`json_errors` rewrites axum's own); bodies over a route's limit answer 413.

mod arrays;
mod blobs;
mod bulk;
mod datasets;
mod error;
mod events;
pub(crate) mod folds;
pub mod follow;
mod holds;
mod json_body;
mod json_errors;
pub mod openapi;
mod problems;
mod provenance;
pub mod rate_limit;
pub(crate) mod results;
pub mod runapp;
mod shared;
mod submission_folds;
pub(crate) mod submissions;
mod sweeps;
mod webhooks;

pub use error::ApiError;
/// A waiter's slot (events, log follows), named here so that `follow` needs no `events`.
use events::Slot;
pub use events::Waiters;

use crate::master::MasterHandle;
use crate::model::limits::{MAX_BATCH_BODY, MAX_SPEC_BODY};
use crate::store::{Principal, Resource, Store, TokenCheck};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Extension;
use axum::{Json, Router};
use rate_limit::RateLimiter;
use serde_json::json;

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub master: MasterHandle,
    /// Scheduled maintenance jobs from the master's config file.
    pub maintenance: std::sync::Arc<Vec<crate::maintenance::config::Job>>,
    /// Limits set by `serve` flags: inflated sizes, request rates.
    pub limits: std::sync::Arc<ApiLimits>,
}

/// `/runapp/`'s default cap on what one request's b64(zlib) fields inflate to.
pub const DEFAULT_MAX_INFLATED: usize = 64 << 20;

/// The API's limits that `serve` flags set.
pub struct ApiLimits {
    /// `/runapp/`: the most bytes the b64(zlib) fields of one request inflate to, together
    /// (`serve --max-inflated`).
    pub max_inflated: usize,
    /// Requests per token (`serve --rate-limit`, `--rate-burst`, `--rate-limit-admins`).
    pub rate: RateLimiter,
    /// Long polls and event streams of `GET /events` open at once (`serve --max-waiters`).
    pub waiters: Waiters,
    /// The master serves HTTPS: the dashboard's cookie is `Secure`.
    pub https: bool,
    /// `GET /metrics` without a token (`serve --metrics-public`); else admin tokens only.
    pub metrics_public: bool,
    /// Internal ranges webhooks may call (`serve --webhook-allow`).
    pub webhook_allow: crate::webhooks::Allow,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_inflated: DEFAULT_MAX_INFLATED,
            rate: RateLimiter::new(Default::default()),
            waiters: Waiters::new(crate::model::limits::DEFAULT_MAX_WAITERS as usize),
            https: false,
            metrics_public: false,
            webhook_allow: Default::default(),
        }
    }
}

/// Every `/api/v1` route behind a token, as (path, handlers). The router is built from this
/// list and tests/openapi.rs checks the OpenAPI document against it: a new route goes here
/// and gets its `#[utoipa::path]` line in `openapi.rs`.
fn authed_routes(max_body: usize) -> Vec<(&'static str, MethodRouter<ApiState>)> {
    // A request that carries no files gets the body it needs, not `--max-body`: its JSON is
    // parsed whole before any count in it is checked.
    let small =
        |r: MethodRouter<ApiState>| r.layer(DefaultBodyLimit::max(max_body.min(MAX_SPEC_BODY)));
    vec![
        ("/blobs", post(blobs::put_blob)),
        (
            "/folds",
            post(folds::submit)
                .layer(DefaultBodyLimit::max(max_body.min(MAX_SPEC_BODY)))
                .get(folds::list),
        ),
        (
            "/folds/batch",
            post(folds::submit_batch).layer(DefaultBodyLimit::max(max_body.min(MAX_BATCH_BODY))),
        ),
        ("/folds/{id}", get(folds::show)),
        ("/folds/{id}/log", get(folds::log)),
        ("/folds/{id}/analyze", get(folds::analyze)),
        ("/folds/{id}/outputs/{*name}", get(folds::output)),
        ("/folds/{id}/hold", small(post(holds::hold))),
        ("/folds/{id}/release", small(post(holds::release))),
        ("/folds/{id}/remove", small(post(holds::remove))),
        ("/folds/{id}/provenance", get(provenance::show)),
        ("/folds/{id}/rerun", small(post(provenance::rerun))),
        ("/folds/bulk/{action}", small(post(bulk::bulk))),
        ("/arrays", small(post(arrays::create))),
        ("/arrays/{id}", get(arrays::show)),
        ("/arrays/{id}/{index}", get(arrays::fold)),
        (
            "/sweeps",
            post(sweeps::create).layer(DefaultBodyLimit::max(
                max_body.min(crate::model::limits::MAX_SWEEP_BODY),
            )),
        ),
        ("/sweeps/{id}", get(sweeps::show)),
        ("/sweeps/{id}/keep", small(post(sweeps::keep))),
        ("/queue", get(folds::queue)),
        ("/owners", get(folds::owners)),
        ("/events", get(events::events)),
        ("/runners", get(runners)),
        ("/runners/reload", small(post(reload))),
        ("/maintenance", get(maintenance)),
        ("/runners/{name}/drain", small(post(drain))),
        ("/runners/{name}/resume", small(post(resume))),
        ("/datasets", post(datasets::create).get(datasets::list)),
        (
            "/datasets/{id}",
            get(datasets::show).delete(datasets::delete),
        ),
        ("/datasets/{id}/table", get(datasets::table)),
        ("/datasets/{id}/files/{*name}", get(datasets::file)),
        (
            "/datasets/{id}/splits",
            small(post(datasets::create_split)).get(datasets::list_splits),
        ),
        ("/splits/{id}", get(datasets::show_split)),
        (
            "/scores",
            post(datasets::scores).layer(DefaultBodyLimit::max(
                max_body.min(crate::model::limits::MAX_SCORE_BODY),
            )),
        ),
        (
            "/submissions",
            post(submissions::create).get(submissions::list),
        ),
        ("/submissions/{id}", get(submissions::show)),
        ("/submissions/{id}/resubmit", post(submissions::resubmit)),
        // Index lists, as POST /submissions carries them: --max-body.
        ("/submissions/{id}/folds", post(submission_folds::add_folds)),
        ("/submission-folds/{id}", get(submissions::show_fold)),
        (
            "/submission-folds/{id}/predictions/{phase}",
            get(results::predictions),
        ),
        ("/results/new", small(post(results::new_results))),
        ("/results/list", small(post(results::list_results))),
        ("/datasets/{id}/leaderboard", get(results::leaderboard)),
        ("/webhooks", get(webhooks::list)),
        ("/webhook-secret", get(webhooks::secret)),
    ]
}

/// The `/api/v1` routes that need no token: liveness and the OpenAPI document.
fn public_routes() -> Vec<(&'static str, MethodRouter<ApiState>)> {
    vec![
        (
            "/health",
            get(|| async { Json(json!({"ok": true, "version": env!("CARGO_PKG_VERSION")})) }),
        ),
        ("/openapi.json", get(openapi::document)),
    ]
}

/// The path of every `/api/v1` route the router serves, as written there (`{*name}` for a
/// rest of the path), without the `/api/v1` prefix.
pub fn route_paths() -> Vec<&'static str> {
    let authed = authed_routes(0).into_iter();
    authed
        .chain(public_routes())
        .map(|(path, _)| path)
        .collect()
}

pub fn router(state: ApiState, max_body: usize) -> Router {
    let dashboard = crate::dashboard::router(state.clone());
    let authed = authed_routes(max_body)
        .into_iter()
        .fold(Router::new(), |r, (path, handlers)| r.route(path, handlers))
        // Route layers wrap what is above them: auth runs first, then the rate limit.
        .route_layer(middleware::from_fn_with_state(state.clone(), throttle))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let public = public_routes()
        .into_iter()
        .fold(Router::new(), |r, (path, handlers)| r.route(path, handlers));
    public
        .merge(authed)
        .route_layer(middleware::from_fn(crate::metrics::tag_route))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see the README for the API",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(json_body::objects_only))
        .with_state(state.clone())
        .pipe(|api| Router::new().nest("/api/v1", api))
        .merge(crate::metrics::routes(state.clone()))
        .merge(
            runapp::router(state, max_body)
                .route_layer(middleware::from_fn(crate::metrics::tag_route)),
        )
        // As the fallback of an otherwise empty router, the layer wraps the whole app (a
        // router's own `layer` wraps each route, inside the 405 answer and its Allow header).
        .pipe(|app| Router::new().fallback_service(app))
        .layer(middleware::from_fn(crate::metrics::track_http))
        .layer(middleware::from_fn(json_errors::json_errors))
        // The web dashboard at `/`: HTML pages, outside the JSON error layer.
        .merge(dashboard)
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

async fn auth(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The dashboard's session cookie stands for a token on GET requests only: nothing that
    // changes anything is done with a cookie, so no other site can do it with one (CSRF).
    let cookie = matches!(*req.method(), Method::GET | Method::HEAD)
        .then(|| crate::dashboard::cookie_token(req.headers()))
        .flatten();
    let Some(token) = header.strip_prefix("Bearer ").or(cookie.as_deref()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send `Authorization: Bearer TOKEN` (create one with `datarun token create NAME`)",
        ));
    };
    match principal(&state, token).await? {
        Ok(principal) => {
            // Every change an admin token makes is logged with the token's owner.
            let audit = (principal.admin && !req.method().is_safe()).then(|| {
                let uri = req
                    .extensions()
                    .get::<axum::extract::OriginalUri>()
                    .map_or(req.uri(), |o| &o.0);
                (
                    principal.name.clone(),
                    req.method().clone(),
                    uri.path().to_string(),
                )
            });
            req.extensions_mut().insert(principal);
            let resp = next.run(req).await;
            if let Some((owner, method, path)) = audit {
                tracing::info!(target: "datarun::audit", %owner, %method, %path, status = resp.status().as_u16(), "admin action");
            }
            Ok(resp)
        }
        Err(refused) => Err(ApiError::new(StatusCode::UNAUTHORIZED, refused.message)),
    }
}

/// The per-token rate limit, after auth: 429 with `Retry-After` over it (`{"detail": ...}`
/// under `/runapp/`, as DRF's throttling answered).
pub(crate) async fn throttle(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(who) = req.extensions().get::<Principal>() else {
        return next.run(req).await;
    };
    let Err(wait) = state.limits.rate.check(who, std::time::Instant::now()) else {
        return next.run(req).await;
    };
    let limit = state.limits.rate.limit();
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = if req.uri().path().starts_with("/runapp") {
        (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "detail": format!("Request was throttled. Expected available in {secs} second{}.", if secs == 1 { "" } else { "s" }) })),
        )
            .into_response()
    } else {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit: {} makes more than {} requests per second (bursts of {}); retry in {:.2} s (see serve --rate-limit)",
                who.name, limit.per_second, limit.burst, wait.as_secs_f64()
            ),
        )
        .into_response()
    };
    resp.headers_mut()
        .insert(header::RETRY_AFTER, json_errors::retry_after(wait));
    resp
}

/// Why a token is refused.
pub(crate) struct Refused {
    /// Not a token at all (rather than an expired or revoked one).
    pub unknown: bool,
    pub message: String,
}

/// Who a token belongs to (bearer here, Basic under `/runapp/`), or why it is refused
/// (unknown, expired or revoked).
pub(crate) async fn principal(
    state: &ApiState,
    token: &str,
) -> Result<Result<Principal, Refused>, ApiError> {
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| ms.to_string())
    };
    let refused = |why: String| Refused {
        unknown: false,
        message: format!("{why}; ask for a new one (`datarun token create NAME` on the master)"),
    };
    Ok(
        match state.store.verify_token(token.trim().to_string()).await? {
            TokenCheck::Valid(p) => Ok(p),
            TokenCheck::Expired(t) => Err(refused(format!("token expired at {}", at(t)))),
            TokenCheck::Revoked(t) => Err(refused(format!("token revoked at {}", at(t)))),
            TokenCheck::Unknown => Err(Refused {
                unknown: true,
                message: "unknown token".into(),
            }),
        },
    )
}

/// Ok when `who` may see the resource (README "Tenancy"); else 404 exactly as if it were
/// missing.
pub(crate) async fn visible(s: &ApiState, who: &Principal, r: Resource) -> Result<(), ApiError> {
    Ok(s.store.visible(&who.scope(), r).await?)
}

/// Runners' facts for everyone; which attempts run where only for admins.
pub(crate) async fn runners(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> Json<serde_json::Value> {
    let mut runners = state.master.runners();
    if !who.admin {
        for r in &mut runners {
            r.attempts.clear();
            r.queued.clear();
            r.cancelling.clear();
        }
    }
    Json(json!({ "runners": runners, "inventory_error": state.master.inventory_error() }))
}

fn admin(who: &Principal) -> Result<(), ApiError> {
    if who.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} is not an admin; runners and maintenance are for admin tokens",
            who.name
        )))
    }
}

async fn reload(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&who)?;
    let report = state.master.reload().await.map_err(ApiError::bad_request)?;
    Ok(Json(json!({ "reloaded": report })))
}

async fn drain(
    s: State<ApiState>,
    who: Extension<Principal>,
    name: Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_drained(s, who, name, true).await
}

async fn resume(
    s: State<ApiState>,
    who: Extension<Principal>,
    name: Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_drained(s, who, name, false).await
}

async fn set_drained(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    drained: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&who)?;
    state
        .master
        .drain(&name, drained)
        .await
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))?;
    Ok(Json(json!({ "runner": name, "drained": drained })))
}

async fn maintenance(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&who)?;
    let jobs = crate::maintenance::describe(&state.maintenance, chrono::Utc::now());
    let recent = state.store.events_of_kind("maintenance".into(), 50).await?;
    let recent: Vec<_> = recent
        .into_iter()
        .map(|(at, detail)| json!({"at": at, "detail": detail}))
        .collect();
    Ok(Json(json!({ "jobs": jobs, "recent": recent })))
}
