//! A provisioning run: every selected runner in parallel (at most `forks` at once), one SSH
//! connection per host, the playbook's steps as commands on it.
//!
//! A step runs in apply mode (its script checks, then changes what differs), except steps
//! whose change needs data from here (the agent binary, images): those run in check mode, and
//! only when they report a change is the data sent. With `--check` every step runs in check
//! mode and nothing is sent. A healthy host thus costs one connection and one command per step.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::playbook::{failure_reason, parse_output, AgentBinary, Playbook, Step, StepOutput};
use super::report::{tail, Failure, HostReport, Status, StepReport};
use super::{quote, ExecOutput, RemoteLayout, Session, SshOptions, SshTarget};
use crate::agent::docker::engine;
use crate::inventory::RunnerSpec;

/// Lines of a failed step's output kept in its report.
const TAIL_LINES: usize = 12;
/// How long a run waits for another run's lock on a host.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub ssh: SshOptions,
    /// Only look: say what would change.
    pub check: bool,
    /// Hosts provisioned at once.
    pub forks: usize,
}

/// What the run tells as it goes: a host's step ended, or a host failed.
pub enum Event<'a> {
    Step(&'a str, &'a StepReport),
    Failed(&'a str, &'a Failure),
    /// The host's sshd could not be reached (see [`super::SshError::is_unreachable`]).
    Unreachable(&'a str, &'a Failure),
}

/// Called from the hosts' tasks as they go.
pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

/// Provisions `runners` with `binary` as the agent; one report per runner, in their order.
pub async fn provision(
    runners: Vec<RunnerSpec>,
    binary: AgentBinary,
    opts: RunOptions,
    progress: Progress,
) -> Result<Vec<HostReport>, String> {
    let playbook = Arc::new(Playbook::embedded()?);
    let binary = Arc::new(binary);
    let opts = Arc::new(opts);
    let forks = Arc::new(Semaphore::new(opts.forks.max(1)));
    let tasks: Vec<_> = runners
        .into_iter()
        .map(|runner| {
            let (playbook, binary, opts, forks, progress) = (
                playbook.clone(),
                binary.clone(),
                opts.clone(),
                forks.clone(),
                progress.clone(),
            );
            tokio::spawn(async move {
                let _permit = forks.acquire_owned().await;
                let host = Host {
                    runner: &runner,
                    playbook: &playbook,
                    binary: &binary,
                    opts: &opts,
                    progress: &progress,
                };
                host.run().await
            })
        })
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(
            task.await
                .map_err(|e| format!("a provisioning task died: {e}"))?,
        );
    }
    Ok(reports)
}

struct Host<'a> {
    runner: &'a RunnerSpec,
    playbook: &'a Playbook,
    binary: &'a AgentBinary,
    opts: &'a RunOptions,
    progress: &'a Progress,
}

/// A failed step, before it is reported.
struct StepError {
    reason: String,
    output: String,
}

impl StepError {
    fn new(reason: impl Into<String>) -> StepError {
        StepError {
            reason: reason.into(),
            output: String::new(),
        }
    }

    fn of(out: &ExecOutput) -> StepError {
        let (stdout, stderr) = (out.stdout_lossy(), out.stderr_lossy());
        StepError {
            reason: failure_reason(&stderr, out.status, out.signal.as_deref()),
            output: tail(&stdout, &stderr, TAIL_LINES),
        }
    }
}

impl Host<'_> {
    async fn run(&self) -> HostReport {
        let started = Instant::now();
        let address = self.runner.address().unwrap_or_default();
        let mut report = HostReport::new(&self.runner.name, &address);
        let connected = match SshTarget::for_runner(self.runner, &self.opts.ssh) {
            Ok(target) => Session::connect(&target, &self.opts.ssh).await,
            Err(e) => {
                self.failed(&mut report, "connect", StepError::new(e));
                report.elapsed_ms = started.elapsed().as_millis() as u64;
                return report;
            }
        };
        match connected {
            Ok(session) => {
                match self.lock(&session).await {
                    Ok(mut lock) => {
                        self.steps(&session, &mut report).await;
                        // EOF ends the lock holder on the host, which releases the lock.
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut lock).await;
                    }
                    Err(e) => self.failed(&mut report, "lock", e),
                }
                session.close().await;
            }
            Err(e) if e.is_unreachable() => {
                let failure = Failure {
                    step: "connect".into(),
                    reason: e.to_string(),
                    output: String::new(),
                };
                (self.progress)(Event::Unreachable(&self.runner.name, &failure));
                report.unreachable(failure);
            }
            Err(e) => self.failed(&mut report, "connect", StepError::new(e.to_string())),
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        report
    }

    fn failed(&self, report: &mut HostReport, step: &str, e: StepError) {
        let failure = Failure {
            step: step.to_string(),
            reason: e.reason,
            output: e.output,
        };
        (self.progress)(Event::Failed(&self.runner.name, &failure));
        report.fail(failure);
    }

    async fn steps(&self, session: &Session, report: &mut HostReport) {
        let mut vars = super::playbook::vars(self.runner, self.binary);
        for step in Step::ALL {
            let started = Instant::now();
            match self.step(session, step, &mut vars).await {
                Ok(out) => {
                    report.facts.extend(out.facts.clone());
                    let done = StepReport {
                        step: step.name().to_string(),
                        status: if out.changes.is_empty() {
                            Status::Ok
                        } else {
                            Status::Changed
                        },
                        detail: detail(step, &out),
                        changes: out.changes,
                        notes: out.notes,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                    };
                    (self.progress)(Event::Step(&self.runner.name, &done));
                    report.push(done);
                }
                Err(e) => {
                    self.failed(report, step.name(), e);
                    return;
                }
            }
        }
    }

    /// Runs one step, updating the variables later steps see.
    async fn step(
        &self,
        session: &Session,
        step: Step,
        vars: &mut Value,
    ) -> Result<StepOutput, StepError> {
        let check = self.opts.check;
        let script = self.playbook.script(step, vars).map_err(StepError::new)?;
        let mode = if check || step.has_input() {
            "check"
        } else {
            "apply"
        };
        let out = self.exec(session, step, &script, mode, None).await?;
        match step {
            Step::Facts => {
                for key in ["distro", "distro_like", "init"] {
                    let value = out.facts.get(key).cloned().unwrap_or_default();
                    vars["facts"][key] = Value::String(value);
                }
            }
            Step::Agent => {
                let current = out.facts.get("agent").map(String::as_str) == Some("current");
                if !current && !check {
                    let file = tokio::fs::File::open(&self.binary.path)
                        .await
                        .map_err(|e| {
                            StepError::new(format!(
                                "cannot read {}: {e}",
                                self.binary.path.display()
                            ))
                        })?;
                    self.exec(session, step, &script, "apply", Some(Box::new(file)))
                        .await?;
                }
                // With --check too: the service step then predicts the restart the run makes.
                vars["binary_changed"] = Value::Bool(!current);
                vars["agent_current"] = Value::Bool(current || !check);
            }
            Step::Images if !check => {
                for image in &out.images {
                    self.load_image(session, image).await?;
                }
            }
            Step::Service => vars["service_changed"] = Value::Bool(!out.changes.is_empty()),
            _ => {}
        }
        Ok(out)
    }

    /// Runs a step's script in `mode`, with `input` on its stdin; a failure is the step's.
    async fn exec(
        &self,
        session: &Session,
        step: Step,
        script: &str,
        mode: &str,
        input: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
    ) -> Result<StepOutput, StepError> {
        let command = self.command(&format!(
            "sh -c {} datarun-{} {mode}",
            quote(script),
            step.name()
        ));
        let out = match input {
            Some(input) => session.exec_with_input(&command, input, |_| {}).await,
            None => session.exec(&command).await,
        }
        .map_err(|e| StepError::new(e.to_string()))?;
        if !out.success() {
            return Err(StepError::of(&out));
        }
        Ok(parse_output(&out.stdout_lossy()))
    }

    /// Takes the host's provisioning lock (`<state_dir>.provision.lock`, with `flock`), so that
    /// two runs reaching one host take turns instead of failing each other. It is held by a
    /// command on the host for as long as the returned writer stays open (or the connection
    /// lives); a host without `flock` is provisioned unlocked.
    async fn lock(
        &self,
        session: &Session,
    ) -> Result<impl tokio::io::AsyncWrite + Unpin + Send, StepError> {
        use tokio::io::AsyncBufReadExt;
        let root = RemoteLayout::for_runner(self.runner).root().to_path_buf();
        let file = format!("{}.provision.lock", root.display());
        let script = format!(
            "f={f}; mkdir -p \"$(dirname \"$f\")\" || exit 1; \
             if ! command -v flock >/dev/null 2>&1; then echo unlocked; exec cat >/dev/null; fi; \
             exec flock -w {wait} \"$f\" sh -c 'echo locked; exec cat >/dev/null'",
            f = quote(&file),
            wait = LOCK_WAIT.as_secs()
        );
        let command = self.command(&format!("sh -c {}", quote(&script)));
        let (writer, reader) = session
            .open_stream(&command)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(reader);
        let read = tokio::time::timeout(
            LOCK_WAIT + std::time::Duration::from_secs(10),
            reader.read_line(&mut line),
        )
        .await;
        match (read, line.trim()) {
            (Ok(Ok(_)), "locked") => Ok(writer),
            (Ok(Ok(_)), "unlocked") => {
                tracing::warn!(host = %self.runner.name, "no flock on the host: provisioning it unlocked");
                Ok(writer)
            }
            _ => Err(StepError::new(format!(
                "another `datarun provision` has held the lock {file} on this host for more \
                 than {} s (or it could not be taken; see the host's log)",
                LOCK_WAIT.as_secs()
            ))),
        }
    }

    /// `command`, through `sudo -n` unless the ssh user is root.
    fn command(&self, command: &str) -> String {
        match self.runner.user.as_deref() {
            None | Some("root") => command.to_string(),
            Some(_) => format!("sudo -n {command}"),
        }
    }

    /// Streams `image` from this machine's engine into `datarun image load -` on the runner.
    async fn load_image(&self, session: &Session, image: &str) -> Result<(), StepError> {
        let docker = engine::connect().await.map_err(StepError::new)?;
        let tarball = engine::export(&docker, image)
            .await
            .map_err(StepError::new)?;
        let bin = RemoteLayout::for_runner(self.runner).bin();
        let command = self.command(&format!("{} image load -", quote(&bin.to_string_lossy())));
        let started = Instant::now();
        let out = session
            .exec_with_input(&command, tarball, |_| {})
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        if !out.success() {
            let mut e = StepError::of(&out);
            e.reason = format!("loading image {image} on the runner failed: {}", e.reason);
            if let Some(line) = out.stderr_lossy().lines().rev().find(|l| !l.is_empty()) {
                e.reason = format!("loading image {image} on the runner failed: {line}");
            }
            return Err(e);
        }
        tracing::debug!(host = %self.runner.name, %image, "loaded in {:?}", started.elapsed());
        Ok(())
    }
}

/// What a step found, in a few words for the progress line.
fn detail(step: Step, out: &StepOutput) -> Option<String> {
    let fact = |key: &str| out.facts.get(key).filter(|v| !v.is_empty());
    match step {
        Step::Facts => {
            let mut words = vec![
                fact("os")?.clone(),
                fact("arch")?.clone(),
                fact("distro").cloned().unwrap_or_default(),
            ];
            if let Some(v) = fact("distro_version") {
                words.push(v.clone());
            }
            let init = match fact("init").map(String::as_str) {
                Some("systemd") => "systemd",
                _ => "no systemd",
            };
            Some(format!("{}, {init}", words.join(" ")))
        }
        Step::Docker => fact("docker").map(|v| format!("Docker {v}")),
        Step::Health => {
            let facts: Value = serde_json::from_str(fact("agent_facts")?).ok()?;
            Some(format!(
                "agent {} answers",
                facts["agent_version"].as_str().unwrap_or("?")
            ))
        }
        _ => None,
    }
}
