//! One attempt's run: its inputs placed, its executor run with live progress and status,
//! and its report packed (outputs hashed from disk, the log inline or as a file).

use super::*;

/// The image a docker runner runs for `run`, or why it will not.
fn allowed_image(run: &RunAttempt, runner: &str, images: &[String]) -> Result<String, String> {
    let Some(image) = &run.image else {
        return Err(format!(
            "runner {runner} runs folds in containers and the fold names no image; pass --image"
        ));
    };
    let name = crate::model::provenance::unpinned(image);
    if images.iter().any(|i| i == name || i == "*") {
        Ok(image.clone())
    } else {
        Err(format!(
            "image {image:?} is not allowed on runner {runner} (allowed: {})",
            images.join(", ")
        ))
    }
}

/// Copies each input (its name, its blob in the journal) into `input_dir`; the first failure
/// is the attempt's error.
fn place_inputs(copies: &[(String, PathBuf)], input_dir: &std::path::Path) -> Result<(), String> {
    for (name, blob) in copies {
        check_file_name(name).map_err(|e| format!("input: {e}"))?;
        let dest = input_dir.join(name);
        dest.parent()
            .map(std::fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|_| std::fs::copy(blob, &dest))
            .map_err(|e| format!("cannot place input {name:?}: {e}"))?;
    }
    Ok(())
}

/// Places the inputs, runs the executor, and packs the result.
pub(super) async fn execute(
    journal: &Journal,
    ctx: &Ctx,
    run: RunAttempt,
    dir: PathBuf,
    out: &Outbox,
    cancel_tx: watch::Sender<bool>,
    cancel_rx: watch::Receiver<bool>,
) -> AttemptReport {
    let attempt = run.attempt;
    let runner: &str = &ctx.runner;
    if !ctx.adopt && !run.inputs.is_empty() {
        // Copies can be large: off the agent's one runtime thread, where every fold's limits
        // and every message of the master wait their turn.
        let copies: Vec<(String, PathBuf)> = run
            .inputs
            .iter()
            .map(|i| (i.name.clone(), journal.blob_path(&i.sha256)))
            .collect();
        let input_dir = dir.join("input");
        let placed = tokio::task::spawn_blocking(move || place_inputs(&copies, &input_dir)).await;
        match placed {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return error_report(attempt, message),
            Err(e) => return error_report(attempt, format!("cannot place the inputs: {e}")),
        }
    }
    let log_limit = run.log_limit.min(protocol::MAX_LOG);
    let req = ExecRequest {
        attempt,
        fold: run.fold,
        runner: runner.to_string(),
        image: run.image.clone(),
        command: run.command.clone(),
        env: run.env.clone(),
        work_dir: dir.clone(),
        input_dir: dir.join("input"),
        output_dir: dir.join("output"),
        memory_limit: Some(run.grant.memory),
        millicpus: run.grant.millicpus,
        soft_limit: run.soft_limit_ms.map(Duration::from_millis),
        hard_limit: run.hard_limit_ms.map(Duration::from_millis),
        gpus: run.grant.gpus.clone(),
        log_limit,
        output_limit: run.output_limit,
    };
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<crate::model::Progress>();
    let _ = out.send(FromAgent::Started { attempt });
    let forward = {
        let out = out.clone();
        let status_file = req.output_dir.join(crate::model::STATUS_FILE);
        tokio::spawn(async move {
            while let Some(mut progress) = progress_rx.recv().await {
                progress.status = read_status(&status_file).await;
                let _ = out.send(FromAgent::Progress { attempt, progress });
            }
        })
    };
    // A cancel request may also arrive through the journal (from a later agent process).
    let cancel_file = {
        let dir = dir.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if dir.join("cancel").exists() {
                    let _ = cancel_tx.send(true);
                    return;
                }
            }
        })
    };
    let (result, ran): (ExecResult, Option<Ran>) = match &ctx.backend {
        Backend::Process if run.image.is_some() => {
            let message = format!(
                "runner {runner} runs folds as plain processes and cannot run image {:?}",
                run.image.as_deref().unwrap_or_default()
            );
            // No progress will come: the forwarder below ends when its sender is gone.
            drop(progress_tx);
            (ExecResult::error(message), None)
        }
        Backend::Process => {
            // Resolved once, for the run and for the record of what ran; a program hashed
            // before is recorded at once, a new one hashed beside the run, not before it.
            let program = crate::agent::process::program_path(&req);
            let known = program
                .as_ref()
                .ok()
                .and_then(|p| crate::agent::provenance::program_known(p));
            let hashing = match (&known, &program) {
                (None, Ok(path)) => {
                    let path = path.clone();
                    Some(tokio::task::spawn_blocking(move || {
                        crate::agent::provenance::program_at(&path)
                    }))
                }
                _ => None,
            };
            let result =
                crate::agent::process::run_resolved(req, program, progress_tx, cancel_rx).await;
            let ran = match hashing {
                Some(hashing) => hashing.await.ok(),
                None => known.or_else(|| Some(crate::agent::provenance::program_unresolved())),
            };
            (result, ran)
        }
        Backend::Broken(message) => {
            let message = format!("the Docker engine on runner {runner} is unavailable: {message}");
            drop(progress_tx);
            (ExecResult::error(message), None)
        }
        Backend::Docker(docker) => {
            let allowed = match allowed_image(&run, runner, &ctx.images) {
                Ok(image) if crate::model::provenance::pin(&image).is_some() => {
                    crate::agent::provenance::pinned_allowed(docker, &image, &ctx.images).await
                }
                other => other.map(drop),
            };
            let result = match allowed {
                Err(message) => {
                    drop(progress_tx);
                    ExecResult::error(message)
                }
                Ok(_) if ctx.adopt => docker.adopt(req, progress_tx, cancel_rx).await,
                Ok(_) => docker.run(req, progress_tx, cancel_rx).await,
            };
            let ran = match &result.image_id {
                Some(id) => {
                    let id = Some(id.clone());
                    Some(crate::agent::provenance::image(docker, run.image.clone(), id).await)
                }
                None => None,
            };
            (result, ran)
        }
    };
    cancel_file.abort();
    let _ = forward.await;
    let (names, log) = (result.outputs, result.log);
    // Nothing to read or write (no outputs, the log inline): no hand-off to a blocking thread.
    let described = if names.is_empty() && log.len() <= protocol::INLINE_LOG {
        Ok(describe(&dir, attempt, &names, &log))
    } else {
        tokio::task::spawn_blocking(move || describe(&dir, attempt, &names, &log)).await
    };
    match described {
        Ok(Ok((log, outputs))) => AttemptReport {
            attempt,
            outcome: result.outcome,
            metrics: result.metrics,
            log,
            outputs,
            ran: ran.map(Box::new),
        },
        Ok(Err(e)) => error_report(attempt, format!("cannot keep the log: {e}")),
        Err(e) => error_report(attempt, format!("cannot describe the outputs: {e}")),
    }
}

/// The report's view of an attempt's files: each output hashed from disk (never read whole),
/// and the log inline when short, else written to the attempt's [`protocol::LOG_FILE`] to be
/// fetched like an output.
fn describe(
    dir: &std::path::Path,
    attempt: AttemptId,
    names: &[String],
    log: &[u8],
) -> std::io::Result<(LogData, Vec<OutputFile>)> {
    let mut outputs = Vec::with_capacity(names.len());
    for name in names {
        match crate::transfer::hash_file(&dir.join("output").join(name)) {
            Ok((sha256, size)) => outputs.push(OutputFile {
                name: name.clone(),
                size,
                sha256,
            }),
            Err(e) => tracing::warn!("attempt {attempt}: cannot read output {name:?}: {e}"),
        }
    }
    let log = if log.len() <= protocol::INLINE_LOG {
        LogData::Inline(protocol::b64(log))
    } else {
        crate::agent::journal::write_atomic(&dir.join(protocol::LOG_FILE), log, true)?;
        LogData::File {
            size: log.len() as u64,
            sha256: crate::transfer::sha256_hex(log),
        }
    };
    Ok((log, outputs))
}

/// The first line of a fold's status file (at most `STATUS_MAX` bytes), if it wrote one.
async fn read_status(path: &std::path::Path) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.ok()?;
    let mut buf = Vec::with_capacity(crate::model::STATUS_MAX);
    file.take(crate::model::STATUS_MAX as u64)
        .read_to_end(&mut buf)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}
