//! The engine around the folds: this agent's attempt containers (listed, removed) and image
//! tarballs loaded without a registry.

use super::*;

impl DockerExecutor {
    /// This agent's attempt containers, as (attempt, alive), sorted by attempt: those labelled
    /// with an attempt, and claimed warm containers, named after theirs.
    pub async fn list_attempt_containers(&self) -> Result<Vec<(AttemptId, bool)>, DockerError> {
        let mut containers = self.list_labelled(LABEL_ATTEMPT).await?;
        containers.extend(self.list_labelled(LABEL_WARM).await?);
        let prefix = format!("/datarun-{}-", self.opts.namespace);
        let mut found: Vec<(AttemptId, bool)> = containers
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.as_ref()?;
                let attempt = match labels.get(LABEL_ATTEMPT) {
                    Some(attempt) => attempt.parse().ok()?,
                    None => c
                        .names
                        .as_ref()?
                        .iter()
                        .find_map(|n| n.strip_prefix(&prefix)?.parse().ok())?,
                };
                let alive = matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING
                            | ContainerSummaryStateEnum::PAUSED
                            | ContainerSummaryStateEnum::RESTARTING
                    )
                );
                Some((attempt, alive))
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Kills and removes the container of an attempt; done if there is none.
    pub async fn remove_attempt(&self, attempt: AttemptId) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(&self.container_name(attempt), Some(options))
            .await
        {
            Err(e) if status(&e) != Some(404) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Streams a `docker save` tarball into the engine; returns the names (or ids) it loaded.
    pub async fn load_image(&self, path: &Path) -> Result<Vec<String>, DockerError> {
        let file_error = |source| DockerError::File {
            path: path.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(file_error)?;
        let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 1 << 20];
            let n = file.read(&mut buf).await?;
            buf.truncate(n);
            Ok::<_, io::Error>((n > 0).then_some((buf, file)))
        });
        let docker = self.docker.clone().with_timeout(LOAD_TIMEOUT);
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut answers = docker.import_image_stream(options, chunks.map_ok(Into::into), None);
        let mut loaded = Vec::new();
        while let Some(answer) = answers.next().await {
            let answer = answer.map_err(|e| {
                DockerError::Engine(format!(
                    "cannot load {}: {}",
                    path.display(),
                    engine_message(&e)
                ))
            })?;
            loaded.extend(answer.stream.as_deref().into_iter().flat_map(loaded_names));
        }
        if loaded.is_empty() {
            return Err(DockerError::Engine(format!(
                "the engine loaded no image from {}: is it a `docker save` tarball?",
                path.display()
            )));
        }
        Ok(loaded)
    }
}

/// Image names from `docker load` answers: "Loaded image: name:tag" / "Loaded image ID: sha".
pub(super) fn loaded_names(stream: &str) -> Vec<String> {
    stream
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("Loaded image: ")
                .or_else(|| line.strip_prefix("Loaded image ID: "))
                .map(|name| name.trim().to_string())
        })
        .collect()
}
