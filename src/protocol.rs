//! The master <-> agent protocol: newline-delimited JSON messages, one per line, the same over
//! every transport (a local child's stdio today, an SSH channel for remote runners). The first
//! message each way is `hello`, carrying `PROTOCOL_VERSION`; a peer that speaks another version
//! is refused with a message saying which versions were seen.

use crate::model::{AttemptId, FoldId, InputRef, Metrics, Outcome, Progress};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PROTOCOL_VERSION: u32 = 1;

/// Largest single protocol line accepted (outputs travel inline, base64-encoded).
pub const MAX_LINE: usize = 512 << 20;

/// What the master grants an attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub millicpus: u32,
    pub memory: u64,
    pub gpus: Vec<String>,
}

/// Everything an agent needs to run one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunAttempt {
    pub attempt: AttemptId,
    pub fold: FoldId,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub env: BTreeMap<String, String>,
    pub inputs: Vec<InputRef>,
    pub grant: Grant,
    pub soft_limit_ms: Option<u64>,
    pub hard_limit_ms: Option<u64>,
    pub log_limit: u64,
    pub output_limit: u64,
}

/// An output file travelling back to the master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    /// base64 (standard alphabet) of the file's bytes.
    pub data: String,
}

/// The result of one attempt, as the agent journals and reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub attempt: AttemptId,
    pub outcome: Outcome,
    pub metrics: Metrics,
    /// base64 of the (tail-capped) log.
    pub log: String,
    pub outputs: Vec<OutputFile>,
}

/// Facts an agent reports about its machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub cpus: f64,
    pub memory: u64,
    pub arch: String,
    pub os: String,
    pub hostname: String,
    pub agent_version: String,
    /// The Docker engine's version, when the agent reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    /// GPU indexes reported by nvidia-smi, when present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// Free bytes on the filesystem of the agent's state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    Hello {
        version: u32,
        runner: String,
    },
    Run(RunAttempt),
    /// A blob the agent asked for; `data` is base64.
    Blob {
        sha256: String,
        data: String,
    },
    /// Kill the attempt (outcome cancelled).
    Cancel {
        attempt: AttemptId,
    },
    /// The master recorded the attempt's result: the agent may forget it.
    Ack {
        attempt: AttemptId,
    },
    Ping {
        seq: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromAgent {
    Hello {
        version: u32,
        facts: Box<Facts>,
        /// Attempts still running (including ones adopted from a previous agent process).
        running: Vec<AttemptId>,
        /// Attempts finished but not yet acknowledged.
        finished: Vec<AttemptReport>,
    },
    NeedBlobs {
        attempt: AttemptId,
        sha256: Vec<String>,
    },
    Started {
        attempt: AttemptId,
    },
    Progress {
        attempt: AttemptId,
        progress: Progress,
    },
    Finished(AttemptReport),
    Pong {
        seq: u64,
    },
    /// The agent could not understand or carry out a message.
    Error {
        message: String,
    },
}

/// Encodes one message as a line (with the trailing newline).
pub fn encode<T: Serialize>(msg: &T) -> String {
    let mut line = serde_json::to_string(msg).expect("protocol messages always serialize");
    line.push('\n');
    line
}

/// Writes each message from `rx` as one line until every sender is gone or writing fails
/// (the peer went away; later sends then fail at once), then shuts `out` down so the peer
/// sees the end of its input. Both ends of every link write this way.
pub async fn write_lines<T, W>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>, mut out: W)
where
    T: Serialize,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    while let Some(msg) = rx.recv().await {
        if out.write_all(encode(&msg).as_bytes()).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
    let _ = out.shutdown().await;
}

pub fn decode<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, String> {
    serde_json::from_str(line.trim_end()).map_err(|e| format!("bad protocol message: {e}"))
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// [`unb64`] of text that may be wrapped in lines or indented (whitespace is ignored), as
/// clients send base64 in JSON; the error says what was wrong.
pub fn unb64_wrapped(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact)
}

pub fn unb64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_one_line() {
        let msg = FromAgent::Finished(AttemptReport {
            attempt: 7,
            outcome: Outcome::ExitCode { code: 3 },
            metrics: Metrics {
                wall_ms: 10,
                cpu_ms: 5,
                peak_memory: 1 << 20,
            },
            log: b64(b"line one\nline two\n"),
            outputs: vec![OutputFile {
                name: "pred.csv".into(),
                data: b64(b"1,2\n"),
            }],
        });
        let line = encode(&msg);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains(r#""type":"finished""#));
        let back: FromAgent = decode(&line).unwrap();
        assert_eq!(back, msg);
        assert!(decode::<ToAgent>(r#"{"type":"launch_missiles"}"#).is_err());
    }
}
