//! A JSON body of the API is an object. serde also reads a struct from a JSON array, field by
//! field in order, so `POST /folds` with `[["true"]]` was a fold running `true`, and
//! `POST /results/new` with `[null, null]` an empty request (found by the OpenAPI fuzz run,
//! tests/openapi.rs). This layer looks at the first bytes of a JSON body only (the rest streams
//! on untouched, under the route's body limit) and answers 400 unless it opens an object;
//! [`check_object`] is the same test for the optional bodies read as bytes.

use super::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// The most body bytes read here to find the first one that is not white space.
const MAX_LEADING_SPACE: usize = 4 << 10;

const NOT_AN_OBJECT: &str =
    "the body must be a JSON object, `{...}` (see the route's schema in /api/v1/openapi.json)";

/// Ok when `body` is empty or white space (no body), or opens a JSON object.
pub(super) fn check_object(body: &[u8]) -> Result<(), ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None | Some(b'{') => Ok(()),
        Some(_) => Err(ApiError::bad_request(NOT_AN_OBJECT)),
    }
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t.eq_ignore_ascii_case("application/json") || t.ends_with("+json")
        })
}

pub async fn objects_only(req: Request, next: Next) -> Response {
    if !is_json(&req) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut head: Vec<Bytes> = Vec::new();
    let mut seen = 0;
    let first = loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                seen += chunk.len();
                let first = chunk.iter().copied().find(|b| !b.is_ascii_whitespace());
                head.push(chunk);
                if first.is_some() || seen > MAX_LEADING_SPACE {
                    break first;
                }
            }
            // A body that fails (too large, cut off) is the extractor's to answer.
            Some(Err(e)) => {
                let rest = futures_util::stream::iter([Err(e)]);
                return pass_on(parts, head, rest.chain(stream), next).await;
            }
            None => break None,
        }
    };
    if first.is_some_and(|b| b != b'{') {
        return ApiError::bad_request(NOT_AN_OBJECT).into_response();
    }
    if first.is_none() && seen > MAX_LEADING_SPACE {
        let msg = format!("{NOT_AN_OBJECT}; this one starts with over 4 KiB of white space");
        return ApiError::bad_request(msg).into_response();
    }
    pass_on(parts, head, stream, next).await
}

async fn pass_on<S>(
    parts: axum::http::request::Parts,
    head: Vec<Bytes>,
    rest: S,
    next: Next,
) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
{
    let head = futures_util::stream::iter(head.into_iter().map(Ok::<_, axum::Error>));
    let body = Body::from_stream(head.chain(rest));
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_and_no_body_pass() {
        assert!(check_object(b"").is_ok());
        assert!(check_object(b" \n").is_ok());
        assert!(check_object(b" {\"reason\": \"x\"}").is_ok());
        for bad in [
            &b"[null, null]"[..],
            b"null",
            b"1",
            b"\"x\"",
            b" [[\"true\"]]",
        ] {
            let e = check_object(bad).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains("JSON object"), "{}", e.message);
        }
    }
}
