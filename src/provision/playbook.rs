//! The bootstrap playbook: handlebars templates (`playbooks/*.hbs`, embedded in the binary)
//! rendered per runner into small shell scripts, one per step, and the parsing of what they
//! print.
//!
//! Rendering is strict (a missing variable is an error) and never HTML-escapes; templates put
//! values into the script only through helpers that quote them: `q` for the shell, `systemd`
//! for unit files. Each step script takes its mode as `$1`: `check` only looks and says what
//! would change, `apply` changes what differs. On stdout a script says `fact: KEY=VALUE`,
//! `change: WHAT`, `note: TEXT` or `image: NAME` (an image the runner lacks); a failure is a
//! non-zero exit with `error: REASON` on stderr.

use std::collections::BTreeMap;

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde_json::Value;

/// One step of the bootstrap, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// OS, architecture, init system.
    Facts,
    /// The datarun binary, uploaded when its sha256 differs (input: the binary).
    Agent,
    /// The engine's socket and version; installs docker.io where allowed.
    Docker,
    /// The agent's user and directories.
    User,
    /// Images the runner lacks, streamed from this machine's engine (input: the images).
    Images,
    /// The agent as a systemd unit or a supervised process.
    Service,
    /// The agent answers on its socket.
    Health,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Facts,
        Step::Agent,
        Step::Docker,
        Step::User,
        Step::Images,
        Step::Service,
        Step::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Facts => "facts",
            Step::Agent => "agent",
            Step::Docker => "docker",
            Step::User => "user",
            Step::Images => "images",
            Step::Service => "service",
            Step::Health => "health",
        }
    }

    /// Steps whose change needs data from here (sent on stdin by the caller): their script
    /// runs in check mode first.
    pub fn has_input(self) -> bool {
        matches!(self, Step::Agent | Step::Images)
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("prelude", include_str!("../../playbooks/prelude.sh.hbs")),
    ("facts", include_str!("../../playbooks/facts.sh.hbs")),
    ("agent", include_str!("../../playbooks/agent.sh.hbs")),
    ("docker", include_str!("../../playbooks/docker.sh.hbs")),
    ("user", include_str!("../../playbooks/user.sh.hbs")),
    ("images", include_str!("../../playbooks/images.sh.hbs")),
    ("service", include_str!("../../playbooks/service.sh.hbs")),
    ("health", include_str!("../../playbooks/health.sh.hbs")),
    (
        "supervise",
        include_str!("../../playbooks/supervise.sh.hbs"),
    ),
    ("unit", include_str!("../../playbooks/unit.hbs")),
];

/// The templates, registered once.
pub struct Playbook {
    registry: Handlebars<'static>,
}

impl Playbook {
    /// The embedded templates.
    pub fn embedded() -> Result<Playbook, String> {
        Playbook::from_templates(TEMPLATES.iter().map(|(n, t)| (*n, t.to_string())))
    }

    /// These templates (name, text); the names of [`TEMPLATES`] are expected.
    pub fn from_templates(
        templates: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Result<Playbook, String> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        for (name, quote) in [
            ("q", shell_word as fn(&str) -> _),
            ("systemd", systemd_word),
        ] {
            registry.register_helper(name, Box::new(Quoting { name, quote }));
        }
        for (name, text) in templates {
            registry
                .register_template_string(name, text)
                .map_err(|e| format!("playbook template {name}: {e}"))?;
        }
        Ok(Playbook { registry })
    }

    /// Renders template `name` with `vars`.
    pub fn render(&self, name: &str, vars: &Value) -> Result<String, String> {
        self.registry
            .render(name, vars)
            .map_err(|e| format!("rendering playbook template {name}: {}", render_reason(&e)))
    }

    /// The script of `step`, rendered with `vars` (which must hold every variable the
    /// templates use; `unit` and `supervise` are rendered here first for the service step).
    pub fn script(&self, step: Step, vars: &Value) -> Result<String, String> {
        if step == Step::Service {
            let mut vars = vars.clone();
            let unit = self.render("unit", &vars)?;
            let supervise = self.render("supervise", &vars)?;
            vars["unit"] = Value::String(unit.trim_end().to_string());
            vars["supervise"] = Value::String(supervise.trim_end().to_string());
            return self.render(step.name(), &vars);
        }
        self.render(step.name(), vars)
    }
}

fn render_reason(e: &RenderError) -> String {
    let mut text = e.to_string();
    if let RenderErrorReason::MissingVariable(Some(var)) = e.reason() {
        text = format!("the variable `{var}` is not defined ({text})");
    }
    text
}

/// The one parameter of a quoting helper, as text.
fn param_text(h: &Helper, helper: &'static str) -> Result<String, RenderError> {
    let param = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(helper, 0))?;
    if param.is_value_missing() {
        // Strict mode covers helpers' parameters too.
        return Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into());
    }
    let value = param.value();
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(_) | Value::Number(_) => Ok(value.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(_) | Value::Object(_) => Err(RenderErrorReason::Other(format!(
            "{helper} quotes one value, not a list or a map (use #each)"
        ))
        .into()),
    }
}

/// A helper writing its one parameter through a quoting function: `{{q value}}` quotes it as
/// one shell word, `{{systemd value}}` as one word of a unit file's command line.
struct Quoting {
    name: &'static str,
    quote: fn(&str) -> Result<String, String>,
}

impl HelperDef for Quoting {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let text = param_text(h, self.name)?;
        out.write(&(self.quote)(&text).map_err(RenderErrorReason::Other)?)?;
        Ok(())
    }
}

fn shell_word(text: &str) -> Result<String, String> {
    Ok(super::quote(text))
}

/// Double-quoted, with `%` specifiers and `$` expansions escaped; no line breaks.
fn systemd_word(text: &str) -> Result<String, String> {
    if text.contains(['\n', '\r']) {
        return Err(format!("a line break cannot go into a unit file: {text:?}"));
    }
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '%' => quoted.push_str("%%"),
            '$' => quoted.push_str("$$"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    Ok(quoted)
}

/// What one run of a step script said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutput {
    pub facts: BTreeMap<String, String>,
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    /// Images the runner lacks.
    pub images: Vec<String>,
}

/// Parses a step script's stdout (lines it does not know are ignored).
pub fn parse_output(stdout: &str) -> StepOutput {
    let mut out = StepOutput::default();
    for line in stdout.lines() {
        if let Some(fact) = line.strip_prefix("fact: ") {
            let (key, value) = fact.split_once('=').unwrap_or((fact, ""));
            out.facts.insert(key.to_string(), value.to_string());
        } else if let Some(what) = line.strip_prefix("change: ") {
            out.changes.push(what.to_string());
        } else if let Some(note) = line.strip_prefix("note: ") {
            out.notes.push(note.to_string());
        } else if let Some(image) = line.strip_prefix("image: ") {
            out.images.push(image.to_string());
        }
    }
    out
}

/// The reason a failed step gives: its last `error: ` line on stderr, else the exit status.
pub fn failure_reason(stderr: &str, status: Option<u32>, signal: Option<&str>) -> String {
    if let Some(reason) = stderr.lines().rev().find_map(|l| l.strip_prefix("error: ")) {
        return reason.to_string();
    }
    match (status, signal) {
        (_, Some(signal)) => format!("killed by signal {signal}"),
        (Some(status), _) => format!("exited with status {status}"),
        (None, None) => "ended without an exit status".to_string(),
    }
}

/// The binary provisioning installs as the agent: this very program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBinary {
    pub path: std::path::PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl AgentBinary {
    /// Hashes the file at `path` (blocking).
    pub fn read(path: &std::path::Path) -> std::io::Result<AgentBinary> {
        use sha2::{Digest, Sha256};
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        Ok(AgentBinary {
            path: path.to_path_buf(),
            sha256: hex::encode(hasher.finalize()),
            size,
        })
    }
}

/// The variables of one runner's playbook, before any step ran (facts empty, nothing current).
pub fn vars(runner: &crate::inventory::RunnerSpec, binary: &AgentBinary) -> Value {
    use super::layout::{RemoteLayout, AGENT_USER};
    let layout = RemoteLayout::for_runner(runner);
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let executor = match runner.executor {
        crate::inventory::ExecutorKind::Docker => "docker",
        crate::inventory::ExecutorKind::Process => "process",
    };
    let images: Vec<&String> = runner.images.iter().filter(|i| *i != "*").collect();
    let mut command = vec![
        path(layout.bin()),
        "agent".into(),
        "--listen".into(),
        path(layout.socket()),
        "--state-dir".into(),
        path(layout.state()),
        "--runner".into(),
        runner.name.clone(),
        "--executor".into(),
        executor.into(),
    ];
    for image in &runner.images {
        command.push("--image".into());
        command.push(image.clone());
    }
    command.extend(runner.warm.iter().flat_map(|w| w.agent_args()));
    serde_json::json!({
        "host": runner.name,
        "state_dir": path(layout.root().to_path_buf()),
        "bin_dir": path(layout.bin_dir()),
        "bin": path(layout.bin()),
        "supervisor": path(layout.supervisor()),
        "journal": path(layout.state()),
        "socket": path(layout.socket()),
        "log": path(layout.log()),
        "pid": path(layout.pid()),
        "agent_user": AGENT_USER,
        "login_user": runner.user.as_deref().unwrap_or("root"),
        "install_docker": runner.install_docker,
        "executor": executor,
        "local_arch": std::env::consts::ARCH,
        "sha256": binary.sha256,
        "version": env!("CARGO_PKG_VERSION"),
        "images": images,
        "agent_command": command,
        "facts": {"distro": "", "distro_like": "", "init": ""},
        "agent_current": false,
        "binary_changed": false,
        "service_changed": false,
    })
}

#[cfg(test)]
#[path = "playbook_tests.rs"]
mod tests;
