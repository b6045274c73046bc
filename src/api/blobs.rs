//! `POST /blobs`: uploads streamed into the blob store.

use super::{ApiError, ApiState};
use crate::store::Principal;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

/// How much of an upload is gathered before it is written out.
const UPLOAD_BUFFER: usize = 1 << 20;

/// `POST /blobs`: the body streams into a temp file of the blob store while it is hashed
/// (bounded memory; still at most `--max-body`), then becomes the blob, and the caller is
/// recorded as an owner of it (having the bytes proves possession), so their folds may name
/// the blob as an input.
pub async fn put_blob(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    req: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<Value>)> {
    use axum::RequestExt;
    use futures_util::StreamExt;
    let mut body = req.into_limited_body().into_data_stream();
    let mut file = s.store.stage_blob()?;
    let mut buf = Vec::with_capacity(UPLOAD_BUFFER);
    while let Some(frame) = body.next().await {
        buf.extend_from_slice(&frame.map_err(body_error)?);
        if buf.len() >= UPLOAD_BUFFER {
            file = write_blocking(file, std::mem::take(&mut buf)).await?;
        }
    }
    let file = write_blocking(file, buf).await?;
    let staged = tokio::task::spawn_blocking(move || file.finish(true))
        .await
        .map_err(upload_failed)?
        .map_err(upload_failed)?;
    let (sha256, size) = s.store.put_staged(staged).await?;
    s.store.own_blobs(who.name, vec![sha256.clone()]).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "sha256": sha256, "size": size })),
    ))
}

async fn write_blocking(
    mut file: crate::transfer::HashingFile,
    data: Vec<u8>,
) -> ApiResult<crate::transfer::HashingFile> {
    tokio::task::spawn_blocking(move || file.write(&data).map(|_| file))
        .await
        .map_err(upload_failed)?
        .map_err(upload_failed)
}

fn upload_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot store the upload: {e}"),
    )
}

/// A body that could not be read: too large (413) or broken off (400).
fn body_error(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        // http_body_util::LengthLimitError, which --max-body's limit raises.
        if err.to_string() == "length limit exceeded" {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, super::error::TOO_LARGE);
        }
        source = err.source();
    }
    ApiError::bad_request(format!("cannot read the upload: {e}"))
}
