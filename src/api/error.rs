//! Every error the API returns is JSON: `{"error": {"code": ..., "message": ...}}`, with a
//! message a person can act on.

use crate::store::StoreError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A body over a route's limit (`DefaultBodyLimit`).
pub(super) const TOO_LARGE: &str = "the request body is larger than this server accepts here (POST /folds: 1 MiB, as every request without files or index lists; POST /folds/batch: 64 MiB; POST /scores: 8 MiB; uploads and requests with files or index lists: serve --max-body); see the README, \"Limits\"";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
}

fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::NOT_IMPLEMENTED => "not_implemented",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A 503 is a limit reached (too many waiters), not a failure of the master.
        if self.status.is_server_error()
            && self.status != StatusCode::SERVICE_UNAVAILABLE
            && self.status != StatusCode::NOT_IMPLEMENTED
        {
            tracing::error!("{}", self.message);
        }
        let body = json!({"error": {"code": code(self.status), "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::model::FieldError> for ApiError {
    /// Over a size limit: 413; malformed: 400.
    fn from(e: crate::model::FieldError) -> ApiError {
        let status = if e.is_too_large() {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e.message())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            // A master that is not (or no longer) the active one does not write.
            StoreError::Fenced(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<crate::workflow::WorkflowError> for ApiError {
    fn from(e: crate::workflow::WorkflowError) -> ApiError {
        use crate::workflow::WorkflowError as W;
        match e {
            W::Store(e) => e.into(),
            W::Invalid(m) => ApiError::bad_request(m),
            W::NotReady(m) => ApiError::new(StatusCode::CONFLICT, m),
            W::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = r.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => TOO_LARGE.to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "send JSON with the header Content-Type: application/json".to_string()
            }
            _ => format!("bad JSON: {}", r.body_text()),
        };
        // Axum answers malformed and mistyped JSON differently (400 / 422); both are the client's.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        ApiError::new(status, message)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            TOO_LARGE.to_string()
        } else {
            r.body_text()
        };
        ApiError::new(status, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Feature;

    /// What PostgreSQL does not have yet answers 501 `not_implemented`, naming the feature.
    #[tokio::test]
    async fn unsupported_is_a_501_naming_the_feature() {
        let r = ApiError::from(StoreError::Unsupported(Feature::Backup)).into_response();
        assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_implemented");
        assert_eq!(
            v["error"]["message"],
            "the scheduled backup (use pg_dump or pg_basebackup): not on PostgreSQL yet (README \"PostgreSQL\" lists what is)"
        );
    }
}
