//! `/runapp/`: the original datarun's REST API (Django `runapp`), so a databoard-era client
//! works unchanged: its routes (trailing slashes; the slash-less form is accepted too), field
//! names, encodings (standard base64 of zlib streams; indices int64 LE; predictions float64
//! LE row-major) and upper-case states. HTTP Basic auth with a datarun token as the password
//! (any user name); failures answer 403 `{"detail": ...}` like the original (DRF coerced its
//! 401s to 403). ONE model: raw data are datasets, `rawdata/split/` a split with
//! scikit-learn's rows, databoard submissions and folds native submissions and submission
//! folds (`store::runapp` maps the client-chosen ids). See README "`/runapp/` compatibility".

mod encoding;
mod folds;
mod force;
mod rawdata;

pub use encoding::{encode_f64, encode_zb64, Inflater, Undecodable};

use super::ApiState;
use crate::store::StoreError;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

/// An error in the original's shape: a status and a JSON body (`{"detail": ...}` or a
/// DRF-style field map `{"field": ["message"]}`).
#[derive(Debug)]
pub struct RunappError(pub StatusCode, pub Value);

impl RunappError {
    pub fn detail(status: StatusCode, message: impl Into<String>) -> RunappError {
        RunappError(status, json!({ "detail": message.into() }))
    }
    pub fn field(field: &str, message: impl Into<String>) -> RunappError {
        RunappError(StatusCode::BAD_REQUEST, json!({ field: [message.into()] }))
    }
    pub fn bad(message: impl Into<String>) -> RunappError {
        RunappError::detail(StatusCode::BAD_REQUEST, message)
    }
    /// A b64(zlib) field that could not be decoded: 413 over the inflate cap, else 400.
    pub fn undecodable(field: &str, prefix: &str, e: Undecodable) -> RunappError {
        let status = if e.too_large {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        RunappError(status, json!({ field: [format!("{prefix}{}", e.message)] }))
    }
}

impl ApiState {
    /// The inflate budget of one `/runapp/` request (`serve --max-inflated`).
    pub(crate) fn inflater(&self) -> Inflater {
        Inflater::new(self.limits.max_inflated)
    }
}

impl IntoResponse for RunappError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!("runapp: {}", self.1);
        }
        (self.0, Json(self.1)).into_response()
    }
}

impl From<super::ApiError> for RunappError {
    fn from(e: super::ApiError) -> RunappError {
        RunappError::detail(e.status, e.message)
    }
}

impl From<crate::model::FieldError> for RunappError {
    fn from(e: crate::model::FieldError) -> RunappError {
        super::ApiError::from(e).into()
    }
}

impl From<StoreError> for RunappError {
    fn from(e: StoreError) -> RunappError {
        super::ApiError::from(e).into()
    }
}

pub type RunappResult<T> = Result<T, RunappError>;

/// The JSON body as a map, or the original's parse error.
pub fn body_object(body: &[u8]) -> RunappResult<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RunappError::bad("send a JSON object")),
        Err(e) => Err(RunappError::bad(format!("JSON parse error - {e}"))),
    }
}

/// HTTP Basic with a datarun token as the password; 403 `{"detail": ...}` otherwise.
async fn basic_auth(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Result<Response, RunappError> {
    let denied = |m: &str| RunappError::detail(StatusCode::FORBIDDEN, m);
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoded) = header.strip_prefix("Basic ") else {
        return Err(denied("Authentication credentials were not provided."));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| denied("Invalid basic header. Credentials not correctly base64 encoded."))?;
    let Some((_user, token)) = decoded.split_once(':') else {
        return Err(denied(
            "Invalid basic header. Credentials not correctly base64 encoded.",
        ));
    };
    match super::principal(&state, token).await? {
        Ok(p) => {
            req.extensions_mut().insert(p);
            Ok(next.run(req).await)
        }
        Err(refused) if refused.unknown => Err(denied("Invalid username/password.")),
        Err(refused) => Err(denied(&format!(
            "Invalid username/password: {}",
            refused.message
        ))),
    }
}

/// A route under both `/runapp/<path>/` (the original's) and `/runapp/<path>`.
fn both(router: Router<ApiState>, path: &str, m: MethodRouter<ApiState>) -> Router<ApiState> {
    router
        .route(&format!("/runapp/{path}/"), m.clone())
        .route(&format!("/runapp/{path}"), m)
}

pub fn router(state: ApiState, max_body: usize) -> Router {
    // Requests that carry no files get 1 MiB: their JSON is parsed whole before it is read.
    let small = |m: MethodRouter<ApiState>| {
        m.layer(DefaultBodyLimit::max(
            max_body.min(crate::model::limits::MAX_SPEC_BODY),
        ))
    };
    let mut r = Router::new();
    r = both(r, "rawdata", get(rawdata::list).post(rawdata::create));
    r = both(r, "rawdata/split", small(post(rawdata::split)));
    r = both(r, "rawdata/customsplit", small(post(rawdata::customsplit)));
    r = both(r, "submissionfold", get(folds::list).post(folds::create));
    r = both(r, "submissionfold/{pk}", get(folds::show));
    r = both(r, "submissionfold-light", get(folds::light));
    r = both(
        r,
        "testpredictions/list",
        small(post(folds::list_predictions)),
    );
    r = both(
        r,
        "testpredictions/new",
        small(post(folds::new_predictions)),
    );
    r.route_layer(middleware::from_fn_with_state(
        state.clone(),
        super::throttle,
    ))
    .route_layer(middleware::from_fn_with_state(state.clone(), basic_auth))
    .layer(DefaultBodyLimit::max(max_body))
    .with_state(state)
}
