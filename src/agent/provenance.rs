//! What an agent reports about how it ran an attempt ([`Ran`], see `model::provenance`): its
//! version and executor; for a container, the id and repo digests of the image it ran; for a
//! process, the program's resolved path and its sha256 (files up to [`MAX_PROGRAM_HASH`]
//! bytes, remembered by path, size and modification time so a program is hashed once).

use super::docker::DockerExecutor;
use crate::model::provenance::{Executed, Program, Ran};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Larger programs are recorded by path only.
pub const MAX_PROGRAM_HASH: u64 = 64 << 20;
/// Programs whose hash is remembered.
const CACHE: usize = 256;

type Key = (PathBuf, u64, Option<SystemTime>);
static HASHES: Mutex<Option<HashMap<Key, String>>> = Mutex::new(None);

fn ran(executor: &str, image: Option<String>) -> Ran {
    Ran {
        executed: Executed {
            executor: Some(executor.to_string()),
            image,
            ..Executed::default()
        },
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// A process fold whose program could not be resolved (it did not run).
pub fn program_unresolved() -> Ran {
    ran("process", None)
}

/// `path` with its links followed (as it stands when that fails). Looked up on every fold, not
/// remembered: a link switched to another program (`update-alternatives`) is recorded as what
/// ran from the next fold on.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The program at `path`, resolved as the executor resolved it (blocking: it may hash it).
pub fn program_at(path: &Path) -> Ran {
    let path = canonical(path);
    let sha256 = match cached(&path) {
        Cached::Known(sha256) => sha256,
        Cached::Miss(key) => hash_program(key),
    };
    with_program(path, sha256)
}

/// [`program_at`] when it needs no hashing (a program hashed before, unchanged, or one too
/// large to hash): a few metadata reads, cheap enough to make on the async side.
pub fn program_known(path: &Path) -> Option<Ran> {
    let path = canonical(path);
    match cached(&path) {
        Cached::Known(sha256) => Some(with_program(path, sha256)),
        Cached::Miss(_) => None,
    }
}

fn with_program(path: PathBuf, sha256: Option<String>) -> Ran {
    let mut out = ran("process", None);
    out.executed.program = Some(Program {
        sha256,
        path: path.to_string_lossy().into_owned(),
    });
    out
}

/// What the hash cache says of the program at `path`.
enum Cached {
    /// Its hash, or None when it has none (unreadable, or over [`MAX_PROGRAM_HASH`]).
    Known(Option<String>),
    /// Not hashed yet, or changed since: hash it under this key.
    Miss(Key),
}

fn cached(path: &Path) -> Cached {
    let Ok(meta) = std::fs::metadata(path) else {
        return Cached::Known(None);
    };
    if meta.len() > MAX_PROGRAM_HASH {
        return Cached::Known(None);
    }
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let cache = HASHES.lock().unwrap_or_else(|e| e.into_inner());
    match cache.as_ref().and_then(|c| c.get(&key)) {
        Some(sha) => Cached::Known(Some(sha.clone())),
        None => Cached::Miss(key),
    }
}

/// Hashes the program named by `key` and remembers it.
fn hash_program(key: Key) -> Option<String> {
    let (sha, _) = crate::transfer::hash_file(&key.0).ok()?;
    let mut cache = HASHES.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= CACHE {
        cache.clear();
    }
    cache.insert(key, sha.clone());
    Some(sha)
}

/// A container fold's image: the id the container ran (from the executor), and its repo
/// digests as the engine has them now.
pub async fn image(docker: &DockerExecutor, image: Option<String>, id: Option<String>) -> Ran {
    let mut out = ran("docker", image);
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        if let Ok(Some(identity)) = docker.image_identity(&id).await {
            out.executed.repo_digests = identity.repo_digests;
        }
        out.executed.image_id = Some(id);
    }
    out
}

/// Whether runner allowlist `images` (without "*") lets a pinned image run: the image with
/// that id must carry one of the allowed names as a tag, or a repo digest of an allowed
/// name's repository.
pub async fn pinned_allowed(
    docker: &DockerExecutor,
    image: &str,
    images: &[String],
) -> Result<(), String> {
    if images.iter().any(|i| i == "*") {
        return Ok(());
    }
    let identity = docker
        .image_identity(image)
        .await?
        .ok_or_else(|| format!("image {image:?} is not on this runner"))?;
    let repo = |name: &str| {
        name.rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(name, |(r, _)| r)
            .to_string()
    };
    let allowed = images.iter().any(|allowed| {
        identity.tags.iter().any(|t| t == allowed)
            || identity
                .repo_digests
                .iter()
                .any(|d| d.split_once('@').is_some_and(|(r, _)| r == repo(allowed)))
    });
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "image {image:?} is pinned to an image that is no longer tagged as an allowed image \
             here (allowed: {}); tag it again or allow it",
            images.join(", ")
        ))
    }
}
