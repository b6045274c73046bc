//! The master <-> agent protocol: newline-delimited JSON messages, one per line, the same over
//! every transport (a local child's stdio today, an SSH channel for remote runners). The first
//! message each way is `hello`, carrying `PROTOCOL_VERSION`; a peer that speaks another version
//! is refused with a message saying which versions were seen.
//!
//! Files never travel whole in one message (protocol 2): a result lists its outputs by name,
//! size and sha256 and the master pulls them in chunks (`Fetch` / `Chunk`); an agent pulls
//! input blobs the same way (`FetchBlob` / `BlobChunk`). See `crate::transfer`.

use crate::model::{AttemptId, FoldId, InputRef, Metrics, Outcome, Progress};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PROTOCOL_VERSION: u32 = 2;

/// The longest protocol line either side accepts. A longer line is skipped (its bytes are
/// read and dropped, never buffered whole) and logged. Files never travel in one line: they
/// come in chunks of at most [`crate::transfer::CHUNK`] bytes.
pub const MAX_LINE: usize = 32 << 20;

/// A log up to this size travels inline (base64) in the report; a longer one stays in the
/// attempt's directory and is fetched like an output.
pub const INLINE_LOG: usize = 64 << 10;

/// The most entries (files and directories) a fold's output directory may hold: more is over
/// the output limit, and a report never lists more outputs.
pub const MAX_OUTPUTS: u64 = 1000;

/// The largest log an agent keeps (the tail): `log_limit` is capped to this.
pub const MAX_LOG: u64 = 16 << 20;

/// The most bytes of a running attempt's log one `LogChunk` carries.
pub const MAX_LOG_CHUNK: u64 = 64 << 10;

/// The file of an attempt that holds its log when it is not inline (relative to the attempt's
/// directory, like `output/NAME` for an output).
pub const LOG_FILE: &str = "log";

/// What the master grants an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Queued behind this attempt (a runner's `prefetch`): the agent holds the run and starts
    /// it the moment that attempt ends, in its slot and within its grant; at once when that
    /// attempt is not (or no longer) on the agent. Added compatibly: absent for a free slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<AttemptId>,
}

/// An output file of a finished attempt, as the agent hashed it on disk. The master pulls its
/// bytes with `Fetch` (file `output/NAME`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// An attempt's log: inline (base64, at most [`INLINE_LOG`] bytes before encoding; a plain
/// JSON string, as in protocol 1), or left in the attempt's directory ([`LOG_FILE`]) to be
/// fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogData {
    Inline(String),
    File { size: u64, sha256: String },
}

impl Default for LogData {
    fn default() -> LogData {
        LogData::Inline(String::new())
    }
}

/// The result of one attempt, as the agent journals and reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub attempt: AttemptId,
    pub outcome: Outcome,
    pub metrics: Metrics,
    pub log: LogData,
    pub outputs: Vec<OutputFile>,
    /// What the agent alone knows about how it ran the attempt (image id, program, its
    /// version): provenance. Added compatibly: older agents send none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran: Option<Box<crate::model::provenance::Ran>>,
}

impl AttemptReport {
    /// A report with no log and no outputs (an attempt that never ran, or was lost).
    pub fn bare(attempt: AttemptId, outcome: Outcome) -> AttemptReport {
        AttemptReport {
            attempt,
            outcome,
            metrics: Metrics::default(),
            log: LogData::default(),
            outputs: Vec::new(),
            ran: None,
        }
    }
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
    /// A chunk of a blob the agent asked for with `FetchBlob`: `data` is base64 of at most
    /// `transfer::CHUNK` bytes from `offset`; `size` is the whole blob's; `eof` when it ends.
    BlobChunk {
        sha256: String,
        offset: u64,
        size: u64,
        data: String,
        eof: bool,
    },
    /// The master cannot send that blob.
    BlobMissing {
        sha256: String,
        message: String,
    },
    /// Send `len` bytes (at most `transfer::CHUNK`) from `offset` of a finished attempt's
    /// file: `output/NAME` or `log` ([`LOG_FILE`]).
    Fetch {
        attempt: AttemptId,
        file: String,
        offset: u64,
        len: u64,
    },
    /// Send at most `max` bytes (at most [`MAX_LOG_CHUNK`]) of a running attempt's
    /// log from output offset `offset` (`LogChunk`, echoing `seq`). Added compatibly: an
    /// agent that does not know it answers `Error`, and the master treats the log as not live.
    FetchLog {
        attempt: AttemptId,
        seq: u64,
        offset: u64,
        max: u64,
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
    /// Send `len` bytes (at most `transfer::CHUNK`) of a blob from `offset` (`BlobChunk`).
    FetchBlob {
        sha256: String,
        offset: u64,
        len: u64,
    },
    Started {
        attempt: AttemptId,
    },
    Progress {
        attempt: AttemptId,
        progress: Progress,
    },
    Finished(AttemptReport),
    /// A chunk of a file the master asked for with `Fetch`: base64 of the bytes from
    /// `offset`; `eof` when they reach the end of the file.
    Chunk {
        attempt: AttemptId,
        file: String,
        offset: u64,
        data: String,
        eof: bool,
    },
    /// The answer to `FetchLog` `seq`: base64 of the log's bytes from `offset` (past the offset
    /// asked for when those bytes were dropped from the kept tail); `size`, the bytes written
    /// so far; `eof` when the log is complete. `live` is false when the agent keeps no live
    /// log of the attempt (it is not running there, or has just ended).
    LogChunk {
        attempt: AttemptId,
        seq: u64,
        offset: u64,
        data: String,
        size: u64,
        eof: bool,
        live: bool,
    },
    /// The agent cannot send that file.
    FetchFailed {
        attempt: AttemptId,
        file: String,
        message: String,
    },
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

/// At most this many bytes of lines go out in one write (see [`write_lines`]).
const WRITE_BATCH: usize = 256 << 10;

/// Writes each message from `rx` as one line until every sender is gone or writing fails
/// (the peer went away; later sends then fail at once), then shuts `out` down so the peer
/// sees the end of its input. Both ends of every link write this way. The messages waiting
/// when a write starts go out together (up to [`WRITE_BATCH`] bytes), one write and one flush
/// for all: on the agent's stdout each flush is a hand-off to a blocking thread.
pub async fn write_lines<T, W>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>, mut out: W)
where
    T: Serialize,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let mut buf = String::new();
    while let Some(msg) = rx.recv().await {
        buf.clear();
        buf.push_str(&encode(&msg));
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(msg) => buf.push_str(&encode(&msg)),
                Err(_) => break,
            }
        }
        if out.write_all(buf.as_bytes()).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
    let _ = out.shutdown().await;
}

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// A line longer than the limit, read and dropped: its length.
    TooLong(usize),
    Eof,
}

/// Reads the next line (without its newline). A line longer than `max` bytes is read to its
/// end and dropped without being buffered; invalid UTF-8 is replaced, so it fails to decode
/// like any other bad message.
pub async fn read_line<R>(input: &mut R, max: usize) -> std::io::Result<Line>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let mut buf = Vec::new();
    let mut len = 0usize;
    let mut over = false;
    loop {
        let avail = input.fill_buf().await?;
        if avail.is_empty() {
            if len == 0 {
                return Ok(Line::Eof);
            }
            break;
        }
        let newline = avail.iter().position(|&b| b == b'\n');
        let part = &avail[..newline.unwrap_or(avail.len())];
        len += part.len();
        if !over && buf.len() + part.len() > max {
            over = true;
            buf = Vec::new();
        }
        if !over {
            buf.extend_from_slice(part);
        }
        let used = part.len() + usize::from(newline.is_some());
        input.consume(used);
        if newline.is_some() {
            break;
        }
    }
    Ok(if over {
        Line::TooLong(len)
    } else {
        Line::Text(
            String::from_utf8(buf)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    })
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
            log: LogData::Inline(b64(b"line one\nline two\n")),
            outputs: vec![OutputFile {
                name: "pred.csv".into(),
                size: 4,
                sha256: "ab".repeat(32),
            }],
            ran: None,
        });
        let line = encode(&msg);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains(r#""type":"finished""#));
        let back: FromAgent = decode(&line).unwrap();
        assert_eq!(back, msg);
        assert!(decode::<ToAgent>(r#"{"type":"launch_missiles"}"#).is_err());
    }

    #[test]
    fn provenance_in_a_report_is_optional_both_ways() {
        use crate::model::provenance::{Executed, Ran};
        // An older agent's report has no `ran`: it still decodes.
        let old = r#"{"type":"finished","attempt":3,"outcome":{"kind":"success"},"metrics":{"wall_ms":1,"cpu_ms":0,"peak_memory":0},"log":"","outputs":[]}"#;
        let FromAgent::Finished(report) = decode::<FromAgent>(old).unwrap() else {
            panic!("a finished report")
        };
        assert_eq!(report.ran, None);
        let mut report = AttemptReport::bare(3, Outcome::Success);
        report.ran = Some(Box::new(Ran {
            executed: Executed {
                executor: Some("docker".into()),
                image: Some("busybox:test".into()),
                image_id: Some(format!("sha256:{}", "ab".repeat(32))),
                ..Executed::default()
            },
            agent_version: "0.1.0".into(),
        }));
        let line = encode(&FromAgent::Finished(report.clone()));
        assert!(line.contains(r#""ran":{"executor":"docker""#), "{line}");
        assert_eq!(
            decode::<FromAgent>(&line).unwrap(),
            FromAgent::Finished(report)
        );
    }

    #[test]
    fn live_log_messages_round_trip() {
        let ask = ToAgent::FetchLog {
            attempt: 3,
            seq: 9,
            offset: 100,
            max: 65536,
        };
        let line = encode(&ask);
        assert!(line.contains(r#""type":"fetch_log""#));
        assert_eq!(decode::<ToAgent>(&line).unwrap(), ask);
        let chunk = FromAgent::LogChunk {
            attempt: 3,
            seq: 9,
            offset: 100,
            data: b64(b"hello\n"),
            size: 106,
            eof: false,
            live: true,
        };
        assert_eq!(decode::<FromAgent>(&encode(&chunk)).unwrap(), chunk);
    }

    #[test]
    fn an_inline_log_is_a_plain_string_and_a_long_one_a_file() {
        let inline = serde_json::to_value(LogData::Inline("aGk=".into())).unwrap();
        assert_eq!(inline, serde_json::json!("aGk="));
        let file = LogData::File {
            size: 70_000,
            sha256: "cd".repeat(32),
        };
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(serde_json::from_str::<LogData>(&text).unwrap(), file);
    }

    #[tokio::test]
    async fn lines_past_the_limit_are_dropped_whole_and_reading_goes_on() {
        let long = "x".repeat(100);
        let text = format!("short\n{long}\n\u{e9}t\u{e9}\nlast");
        let bytes = text.into_bytes();
        let mut input = tokio::io::BufReader::with_capacity(7, &bytes[..]);
        let mut lines = Vec::new();
        loop {
            match read_line(&mut input, 10).await.unwrap() {
                Line::Eof => break,
                line => lines.push(line),
            }
        }
        assert_eq!(
            lines,
            vec![
                Line::Text("short".into()),
                Line::TooLong(100),
                Line::Text("\u{e9}t\u{e9}".into()),
                Line::Text("last".into()),
            ]
        );
        let mut bad = tokio::io::BufReader::new(&b"\xff\xfe{\n"[..]);
        let Line::Text(text) = read_line(&mut bad, 10).await.unwrap() else {
            panic!("a short line")
        };
        assert!(
            decode::<FromAgent>(&text).is_err(),
            "invalid UTF-8 fails to decode"
        );
    }
}
