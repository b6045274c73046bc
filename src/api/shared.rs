//! Helpers the handler files share (so that they import this, `workflow/`, `store/` and
//! `model`, never each other in a loop): work off the async threads, the held-at-submit check,
//! decoding a submission's files, client folds, waiting for the workflow to be current
//! (`recorded`), a running submission fold's live phase, and the waiters' 503.

use super::{ApiError, ApiState};
use crate::model::limits::{check_count, check_text, MAX_LABEL, MAX_SUBMISSION_FOLDS};
use crate::model::{check_file_name, FoldSpec, HoldCode};
use crate::store::{BlobBody, SubmissionFoldRecord};
use crate::submission::Phase;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

/// At most this many files in a submission or a problem dataset.
pub(super) const MAX_FILES: usize = 100;

/// A record found by id, if `who` may see it (an admin, or its owner); another owner's, as a
/// missing one, answers 404 "KIND ID does not exist" (arrays, and sweeps, which are arrays).
pub(super) fn owned_or_missing<T>(
    who: &crate::store::Principal,
    kind: &str,
    id: i64,
    found: crate::store::Result<T>,
    owner: impl FnOnce(&T) -> &str,
) -> ApiResult<T> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("{kind} {id} does not exist"));
    match found {
        Ok(r) if who.admin || owner(&r) == who.name => Ok(r),
        Ok(_) | Err(crate::store::StoreError::NotFound(_)) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// The answer when every waiter's slot is taken: 503, retry in a second (`GET /events`, a
/// followed log).
pub(super) fn retry_soon(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Runs CPU-heavy pure work (parsing, statistics) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Why a fold of `who` would be held at submit (it could never run here), if it would.
pub(super) fn held(s: &ApiState, who: &str, spec: &FoldSpec) -> Option<(HoldCode, String)> {
    s.master.unmatchable(who, spec).map(|u| (u.code, u.reason))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientFold {
    pub(super) train_is: Vec<usize>,
    #[serde(default)]
    pub(super) test_is: Vec<usize>,
    /// The client's own id for this fold (a platform's submission-on-fold id).
    pub(super) client_id: Option<String>,
}

/// The size limits on folds a client gives: how many, and their `client_id`s.
pub(super) fn check_client_folds(folds: &[ClientFold]) -> ApiResult<()> {
    check_count("folds", folds.len(), "folds", MAX_SUBMISSION_FOLDS)?;
    for (i, f) in folds.iter().enumerate() {
        if let Some(id) = &f.client_id {
            check_text(&format!("folds[{i}].client_id"), id, MAX_LABEL)?;
        }
    }
    Ok(())
}

/// Decodes and checks a submission's files: safe names, the workflow elements' files present.
pub(super) fn decode_files(
    files: &BTreeMap<String, String>,
    required: &[String],
) -> ApiResult<BTreeMap<String, Vec<u8>>> {
    check_count("files", files.len(), "files", MAX_FILES)?;
    let mut out = BTreeMap::new();
    for (name, text) in files {
        check_file_name(name).map_err(|e| ApiError::bad_request(format!("files: {e}")))?;
        let data = crate::protocol::unb64_wrapped(text).map_err(|e| {
            ApiError::bad_request(format!("files: {name:?} is not valid base64 ({e})"))
        })?;
        out.insert(name.clone(), data);
    }
    let missing: Vec<&String> = required.iter().filter(|f| !out.contains_key(*f)).collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "files: the dataset's workflow elements need {missing:?}, which the submission lacks (it has {:?})",
            out.keys().collect::<Vec<_>>()
        )));
    }
    Ok(out)
}

/// Waits (at most `workflow::SETTLE_WAIT`) until the workflow task has settled every fold end
/// the store had committed when the request came: reads of submission folds and splits then
/// answer what is recorded, and a client that saw a fold end in the queue reads its result.
/// Nothing is settled here; when the task is idle and current this costs one indexed read.
pub(super) async fn recorded(s: &ApiState) -> ApiResult<()> {
    let top = s.store.newest_event().await?;
    s.master
        .workflow()
        .caught_up(top, crate::workflow::SETTLE_WAIT)
        .await;
    Ok(())
}

/// How far a submission fold still TODO whose queue fold runs got, live (shown in `live`):
/// the fold image writes "trained", then "validated", to its status file after each phase,
/// and the agent reports it with the fold's progress. `state` stays TODO until the fold ends
/// and the workflow records its result (VALIDATED is also an end state, for submissions
/// without a test table). A read-time view: the progress is never recorded.
pub(super) async fn live_phase(
    s: &ApiState,
    sf: &SubmissionFoldRecord,
) -> ApiResult<Option<Phase>> {
    if sf.state != Phase::Todo {
        return Ok(None);
    }
    let fold = s.store.fold(sf.fold_id).await?;
    let status = fold
        .current_attempt
        .and_then(|a| s.master.progress(a))
        .and_then(|p| p.status);
    Ok(match status.as_deref() {
        Some("trained") => Some(Phase::Trained),
        Some("validated" | "tested") => Some(Phase::Validated),
        _ => None,
    })
}

/// A blob as a response with its Content-Length, streamed from its file when it has one.
pub(super) fn blob_response(body: BlobBody, content_type: &'static str) -> Response {
    match body {
        BlobBody::Bytes(data) => ([(header::CONTENT_TYPE, content_type)], data).into_response(),
        BlobBody::File { file, size } => {
            use tokio::io::AsyncReadExt;
            let file = tokio::fs::File::from_std(file).take(size);
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10);
            (
                [
                    (header::CONTENT_TYPE, content_type.to_string()),
                    (header::CONTENT_LENGTH, size.to_string()),
                ],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// The sibling modules a source names after `prefix` (`super::x`, `use super::{x, y}`).
    fn named_after(text: &str, prefix: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                // A group: its top-level names (nested groups belong to the name before them).
                Some(group) => {
                    let (mut depth, mut end) = (0, group.len());
                    for (i, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => {
                                end = i;
                                break;
                            }
                            '}' => depth -= 1,
                            _ => {}
                        }
                    }
                    let mut top = Vec::new();
                    let (mut depth, mut start) = (0, 0);
                    let inner = &group[..end];
                    for (i, c) in inner.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                top.push(&inner[start..i]);
                                start = i + 1;
                            }
                            _ => {}
                        }
                    }
                    top.push(&inner[start..]);
                    top
                }
                None => vec![rest],
            };
            for n in names {
                let word: String = n
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if siblings.contains(&word) {
                    out.insert(word);
                }
            }
        }
        out
    }

    /// The handler files of `api/` (and `runapp/` as one) import each other without a loop:
    /// shared logic lives in `api/mod.rs`, this module, `workflow/`, `store/` or `model`.
    #[test]
    fn api_handler_files_import_each_other_without_a_cycle() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut sources: BTreeMap<String, String> = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut all = String::new();
                for f in std::fs::read_dir(&path).unwrap() {
                    all += &std::fs::read_to_string(f.unwrap().path()).unwrap();
                }
                // One level down, the siblings are `super::super::x`.
                sources.insert(name, all.replace("super::super::", "super::"));
            } else if name != "mod" {
                let text = std::fs::read_to_string(&path).unwrap();
                // Test modules (this one's included) are not the file's imports.
                let code = text
                    .split("#[cfg(test)]\nmod tests")
                    .next()
                    .unwrap_or_default();
                sources.insert(name, code.to_string());
            }
        }
        let siblings: BTreeSet<String> = sources.keys().cloned().collect();
        assert!(
            siblings.len() > 10 && siblings.contains("results"),
            "{siblings:?}"
        );
        let edges: BTreeMap<&String, BTreeSet<String>> = sources
            .iter()
            .map(|(name, text)| {
                let mut to = named_after(text, "super::", &siblings);
                to.remove(name);
                (name, to)
            })
            .collect();
        // The loop the workflow module broke: results → problems → submissions → results.
        assert!(
            named_after("use super::{a, results::{x, y}};", "super::", &siblings)
                .contains("results"),
            "the parser sees grouped imports"
        );
        // Depth-first search for a back edge.
        fn visit<'a>(
            n: &'a String,
            edges: &'a BTreeMap<&'a String, BTreeSet<String>>,
            path: &mut Vec<&'a String>,
            done: &mut BTreeSet<&'a String>,
        ) {
            if done.contains(n) {
                return;
            }
            if let Some(at) = path.iter().position(|p| *p == n) {
                panic!(
                    "api/ files import each other in a loop: {:?} → {n}",
                    &path[at..]
                );
            }
            path.push(n);
            for m in &edges[n] {
                let (key, _) = edges.get_key_value(m).expect("a sibling");
                visit(key, edges, path, done);
            }
            path.pop();
            done.insert(n);
        }
        let mut done = BTreeSet::new();
        for n in edges.keys() {
            visit(n, &edges, &mut Vec::new(), &mut done);
        }
    }
}
