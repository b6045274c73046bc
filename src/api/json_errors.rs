//! The outermost layer: every error answer is JSON. Handlers answer their own errors as JSON
//! already (their messages are kept); what axum answers by itself is not: path and query
//! rejections (`/folds/abc`), 404 outside the routes, 405, 413 and 415 from extractors and
//! body limits. Those are rewritten here into the API's shape, `{"error": {"code",
//! "message"}}`, or the original's `{"detail": ...}` under `/runapp/`, with a message that
//! says what to do.

use super::error::TOO_LARGE;
use super::ApiError;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The most of a non-JSON error body read to build the message (axum's are one line).
const MAX_ERROR_TEXT: usize = 16 << 10;

pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok());
    let message = explain(status, &method, &path, &text, allow);
    let mut out = if path.starts_with("/runapp/") || path == "/runapp" {
        (status, Json(json!({ "detail": message }))).into_response()
    } else {
        ApiError::new(status, message).into_response()
    };
    // Keep what tells the client how to go on (Allow, Retry-After, WWW-Authenticate).
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
}

/// A message a person can act on, from what axum said.
fn explain(
    status: StatusCode,
    method: &Method,
    path: &str,
    text: &str,
    allow: Option<&str>,
) -> String {
    match status {
        StatusCode::NOT_FOUND => format!(
            "no such endpoint: {method} {path}; the API is under /api/v1 (and /runapp/), see the README"
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = allow
                .filter(|a| !a.is_empty())
                .map(|a| format!(" (allowed: {a})"))
                .unwrap_or_default();
            format!("{method} is not allowed on {path}{allowed}")
        }
        StatusCode::PAYLOAD_TOO_LARGE => TOO_LARGE.to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!(
            "{method} {path}: send JSON with the header Content-Type: application/json ({})",
            if text.is_empty() { "unsupported media type" } else { text }
        ),
        _ => {
            if let Some(rest) = text.strip_prefix("Invalid URL: ") {
                format!("{method} {path}: bad path: {}", path_problem(rest))
            } else if let Some(rest) = text.strip_prefix("Failed to deserialize query string: ") {
                format!("{method} {path}: bad query string: {rest}")
            } else if text.is_empty() {
                format!(
                    "{method} {path}: {}",
                    status.canonical_reason().unwrap_or("error")
                )
            } else {
                format!("{method} {path}: {text}")
            }
        }
    }
}

/// axum's "Cannot parse `abc` to a `i64`" as "\"abc\" is not a number (an id)".
fn path_problem(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    match parts.as_slice() {
        ["Cannot parse ", value, " to a ", kind, ""]
            if kind.starts_with('i') || kind.starts_with('u') =>
        {
            format!("{value:?} is not a number (an id)")
        }
        _ => text.replace('`', "\""),
    }
}

/// The `Retry-After` value for a wait: whole seconds, at least 1.
pub fn retry_after(wait: std::time::Duration) -> HeaderValue {
    HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let get = Method::GET;
        let m = explain(
            StatusCode::BAD_REQUEST,
            &get,
            "/api/v1/folds/abc",
            "Invalid URL: Cannot parse `abc` to a `i64`",
            None,
        );
        assert_eq!(
            m,
            "GET /api/v1/folds/abc: bad path: \"abc\" is not a number (an id)"
        );
        assert_eq!(
            path_problem("Wrong number of path arguments"),
            "Wrong number of path arguments"
        );
        let m = explain(
            StatusCode::METHOD_NOT_ALLOWED,
            &Method::DELETE,
            "/api/v1/folds/1",
            "",
            Some("GET,HEAD"),
        );
        assert_eq!(
            m,
            "DELETE is not allowed on /api/v1/folds/1 (allowed: GET,HEAD)"
        );
        assert!(explain(StatusCode::NOT_FOUND, &get, "/x", "", None).contains("/api/v1"));
        assert_eq!(retry_after(std::time::Duration::from_millis(50)), "1");
        assert_eq!(retry_after(std::time::Duration::from_millis(2100)), "3");
    }
}
