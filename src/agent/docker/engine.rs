//! The few Docker engine questions provisioning asks, on either side: on the master, exporting
//! an image a runner lacks (`docker save`, streamed); on a runner, through `datarun image
//! probe`, the engine's version and which images it has. (Running folds stays in
//! the rest of `agent/docker/`; this module is here because only `agent/docker/` speaks to
//! the engine.)

use std::io;

use bollard::Docker;
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWriteExt};

/// The local engine (DOCKER_HOST, else the default socket), on an API version both speak.
pub async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))
}

/// "24.0.7 (API 1.43)".
pub async fn version(docker: &Docker) -> Result<String, String> {
    let v = docker
        .version()
        .await
        .map_err(|e| format!("the Docker engine does not answer: {e}"))?;
    Ok(format!(
        "{} (API {})",
        v.version.unwrap_or_else(|| "unknown".into()),
        v.api_version.unwrap_or_else(|| "unknown".into())
    ))
}

/// Whether the engine has `image` (by name:tag or id).
pub async fn has_image(docker: &Docker, image: &str) -> Result<bool, String> {
    Ok(identity(docker, image).await?.is_some())
}

/// What the engine says an image is.
#[derive(Clone, Debug, Default)]
pub struct ImageIdentity {
    /// `sha256:...`
    pub id: String,
    pub tags: Vec<String>,
    pub repo_digests: Vec<String>,
}

/// The id, tags and repo digests of `image` (by name:tag or id); None when the engine lacks it.
pub async fn identity(docker: &Docker, image: &str) -> Result<Option<ImageIdentity>, String> {
    match docker.inspect_image(image).await {
        Ok(info) => Ok(Some(ImageIdentity {
            id: info.id.unwrap_or_default(),
            tags: info.repo_tags.unwrap_or_default(),
            repo_digests: info.repo_digests.unwrap_or_default(),
        })),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(format!("cannot inspect image {image}: {e}")),
    }
}

/// `docker save IMAGE` as a byte stream (a tarball `docker load` and `datarun image load`
/// read). Checks first that the image is there, for a clear error.
pub async fn export(
    docker: &Docker,
    image: &str,
) -> Result<impl AsyncRead + Unpin + Send + 'static, String> {
    if !has_image(docker, image).await? {
        return Err(format!(
            "image {image} is not on this machine's Docker engine either: build it or load it \
             here (`datarun image load FILE`) before provisioning"
        ));
    }
    // The engine's stream borrows the client: pump it through a pipe from a task of its own.
    let (reader, mut writer) = tokio::io::simplex(1 << 20);
    let (docker, image) = (docker.clone(), image.to_string());
    tokio::spawn(async move {
        let stream = docker
            .export_image(&image)
            .map_err(|e| io::Error::other(format!("exporting {image}: {e}")));
        let mut stream = tokio_util::io::StreamReader::new(stream);
        if let Err(e) = tokio::io::copy(&mut stream, &mut writer).await {
            // The reader sees a truncated tarball, which the runner's engine refuses.
            tracing::warn!("{e}");
        }
        let _ = writer.shutdown().await;
    });
    Ok(reader)
}

/// What `datarun image probe IMAGE...` prints: `engine: VERSION`, then `present: IMAGE` or
/// `missing: IMAGE` per image.
pub async fn probe(images: &[String]) -> Result<String, String> {
    let docker = connect().await?;
    let mut out = format!("engine: {}\n", version(&docker).await?);
    for image in images {
        let word = if has_image(&docker, image).await? {
            "present"
        } else {
            "missing"
        };
        out += &format!("{word}: {image}\n");
    }
    Ok(out)
}
