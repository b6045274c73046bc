//! Commands over session channels: collect their output, stream input into them, or open them
//! as a duplex byte stream. Every channel is drained to its end: with russh an undrained channel
//! stalls the whole connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Client, SshError};

/// Buffer between a stream channel and its reader. The reader must keep reading: once this is
/// full, the connection (all its channels) waits for it.
const STREAM_BUFFER: usize = 4 << 20;
const CHUNK: usize = 64 << 10;

/// What a command left: its exit status (or the signal that killed it), stdout and stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status; `None` when the command was killed by a signal.
    pub status: Option<u32>,
    /// The signal that killed the command (`TERM`, `KILL`, ...).
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

fn channel_error(host: &str, message: String) -> SshError {
    SshError::Channel {
        host: host.to_string(),
        message,
    }
}

/// Opens a session channel and starts `command` on it.
async fn open(
    handle: &russh::client::Handle<Client>,
    host: &str,
    command: &str,
) -> Result<(ChannelReadHalf, ChannelWriteHalf<Msg>), SshError> {
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| channel_error(host, format!("cannot open a channel for `{command}`: {e}")))?;
    channel
        .exec(true, command)
        .await
        .map_err(|e| channel_error(host, format!("cannot start `{command}`: {e}")))?;
    Ok(channel.split())
}

/// Reads a channel to its end, collecting output and exit status.
async fn collect(
    host: &str,
    command: &str,
    rx: &mut ChannelReadHalf,
) -> Result<ExecOutput, SshError> {
    let mut out = ExecOutput::default();
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                out.signal = Some(format!("{signal_name:?}"));
            }
            ChannelMsg::Failure => {
                return Err(channel_error(
                    host,
                    format!("the host refused to run `{command}`"),
                ));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if out.status.is_none() && out.signal.is_none() {
        return Err(channel_error(
            host,
            format!("the connection was lost before `{command}` reported its exit status"),
        ));
    }
    Ok(out)
}

/// Runs `command`, streaming `input` into its stdin (then EOF) while collecting its output.
/// If the command ends before reading all the input, the rest is not sent and its output is
/// returned as is (the caller judges the exit status).
pub(super) async fn exec_with_input(
    handle: &russh::client::Handle<Client>,
    host: &str,
    command: &str,
    mut input: impl AsyncRead + Unpin + Send,
    mut progress: impl FnMut(u64) + Send,
) -> Result<ExecOutput, SshError> {
    let (mut rx, tx) = open(handle, host, command).await?;
    let reading = collect(host, command, &mut rx);
    let writing = async {
        let mut writer = tx.make_writer();
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = input
                .read(&mut buf)
                .await
                .map_err(|source| SshError::Input {
                    host: host.to_string(),
                    command: command.to_string(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            if writer.write_all(&buf[..n]).await.is_err() {
                // The channel is gone; the reading side reports why.
                return Ok(());
            }
            sent += n as u64;
            progress(sent);
        }
        let _ = writer.shutdown().await; // EOF
        Ok(())
    };
    tokio::pin!(reading, writing);
    let result = tokio::select! {
        out = &mut reading => out,
        written = &mut writing => match written {
            Ok(()) => reading.await,
            Err(e) => Err(e),
        },
    };
    if result.is_err() {
        let _ = tx.close().await;
    }
    result
}

/// Starts `command` and returns its stdin as a writer and its stdout as a reader. Its stderr is
/// logged line by line; its exit is logged. Shutting the writer down (or dropping it) sends EOF.
pub(super) async fn open_stream(
    handle: &russh::client::Handle<Client>,
    host: &str,
    command: &str,
) -> Result<(StreamWriter, tokio::io::ReadHalf<tokio::io::SimplexStream>), SshError> {
    let (rx, tx) = open(handle, host, command).await?;
    let (reader, pipe) = tokio::io::simplex(STREAM_BUFFER);
    tokio::spawn(pump(rx, pipe, host.to_string(), command.to_string()));
    let writer = StreamWriter {
        inner: Box::pin(tx.make_writer()),
        half: Some(tx),
        shut: false,
    };
    Ok((writer, reader))
}

/// Moves a stream channel's stdout into the reader's pipe and logs its stderr, to the end of
/// the channel, whether or not anyone still reads.
async fn pump(
    mut rx: ChannelReadHalf,
    mut pipe: tokio::io::WriteHalf<tokio::io::SimplexStream>,
    host: String,
    command: String,
) {
    let mut reader_alive = true;
    let mut stderr = Vec::new();
    let log_lines = |buf: &mut Vec<u8>, all: bool| {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            tracing::info!(target: "datarun::remote", host = %host, "{line}");
        }
        if all && !buf.is_empty() {
            tracing::info!(target: "datarun::remote", host = %host, "{}", String::from_utf8_lossy(buf));
            buf.clear();
        }
    };
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } if reader_alive => {
                reader_alive = pipe.write_all(&data).await.is_ok();
            }
            ChannelMsg::ExtendedData { data, .. } => {
                stderr.extend_from_slice(&data);
                log_lines(&mut stderr, false);
            }
            ChannelMsg::ExitStatus { exit_status: 0 } => {
                tracing::debug!(host = %host, "`{command}` exited");
            }
            ChannelMsg::ExitStatus { exit_status } => {
                tracing::warn!(host = %host, "`{command}` exited with status {exit_status}");
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                tracing::warn!(host = %host, "`{command}` was killed by signal {signal_name:?}");
            }
            ChannelMsg::Failure => {
                tracing::warn!(host = %host, "the host refused to run `{command}`");
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    log_lines(&mut stderr, true);
    let _ = pipe.shutdown().await;
}

/// The stdin of a command opened with `Session::open_stream`.
pub struct StreamWriter {
    inner: Pin<Box<dyn AsyncWrite + Send>>,
    half: Option<ChannelWriteHalf<Msg>>,
    shut: bool,
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.inner.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(self.inner.as_mut().poll_shutdown(cx));
        self.shut = true;
        Poll::Ready(result)
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if self.shut {
            return;
        }
        if let (Some(half), Ok(rt)) = (self.half.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = half.eof().await;
            });
        }
    }
}
