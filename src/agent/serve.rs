//! How masters reach an agent. Two ways, one loop:
//! - `--stdio` (the local transport): one connection on stdin/stdout; when the master closes it,
//!   the agent finishes what it runs, journals the results and exits; the next agent reports
//!   them.
//! - `--listen SOCKET` (the daemon on an ssh runner): masters connect through a Unix socket
//!   (over ssh, via `datarun agent --connect`). Folds outlive connections: the agent keeps
//!   running them, enforcing their limits and journaling their results, while no master is
//!   connected. The latest connection to say hello is the master; an older one is closed.
//!   A connection that only pings (a health check) never displaces the master.

use super::daemon::{Agent, AgentConfig};
use crate::protocol::{self, FromAgent, Line, ToAgent, PROTOCOL_VERSION};
use anyhow::Context;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// What the connections tell the agent loop.
enum Input {
    Opened {
        conn: u64,
        tx: mpsc::UnboundedSender<FromAgent>,
        reader: AbortHandle,
    },
    Line {
        conn: u64,
        line: String,
    },
    Closed {
        conn: u64,
        reason: String,
    },
}

struct Conn {
    tx: mpsc::UnboundedSender<FromAgent>,
    reader: AbortHandle,
}

/// Runs the agent over stdin/stdout until the master closes the input and every attempt this
/// process started has ended.
pub async fn run_stdio(cfg: AgentConfig) -> anyhow::Result<()> {
    let (inputs_tx, inputs) = mpsc::unbounded_channel();
    let writer = match stdio_pipes() {
        Some((input, output)) => attach(1, input, output, inputs_tx.clone()),
        None => attach(
            1,
            tokio::io::stdin(),
            tokio::io::stdout(),
            inputs_tx.clone(),
        ),
    };
    drop(inputs_tx);
    serve(cfg, inputs, true).await?;
    let _ = writer.await;
    Ok(())
}

/// Stdin and stdout as non-blocking pipes on the runtime's reactor, when both are pipes (the
/// local transport's, usually ssh's): tokio's `stdin()` and `stdout()` hand every read and
/// every flush to a blocking thread, a wake-up and a context switch per message. None when
/// either is something else (a socket, a terminal, a file): those stay on the blocking threads.
/// The descriptors are duplicated, so 0 and 1 stay open, and switched to non-blocking mode,
/// which nothing else in this process writes or reads them in.
fn stdio_pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::AsFd;
    let dup =
        |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().ok().map(std::fs::File::from);
    let is_pipe = |f: &std::fs::File| {
        use std::os::unix::fs::FileTypeExt;
        f.metadata().is_ok_and(|m| m.file_type().is_fifo())
    };
    let (input, output) = (
        dup(std::io::stdin().as_fd())?,
        dup(std::io::stdout().as_fd())?,
    );
    if !is_pipe(&input) || !is_pipe(&output) {
        return None;
    }
    // Logs go to stderr with blocking writes: when stderr is the very pipe stdout is (`2>&1`),
    // that pipe must stay blocking.
    let inode = |f: &std::fs::File| {
        use std::os::unix::fs::MetadataExt;
        f.metadata().ok().map(|m| (m.dev(), m.ino()))
    };
    let err = dup(std::io::stderr().as_fd()).and_then(|e| inode(&e));
    if err.is_some() && err == inode(&output) {
        return None;
    }
    let blocking_again = || {
        for fd in [0, 1] {
            // SAFETY: fcntl on descriptors 0 and 1, which this process keeps open.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
            }
        }
    };
    match (
        tokio::net::unix::pipe::Receiver::from_file(input),
        tokio::net::unix::pipe::Sender::from_file(output),
    ) {
        (Ok(input), Ok(output)) => Some((input, output)),
        // The blocking fallback must not meet a descriptor left non-blocking.
        _ => {
            blocking_again();
            None
        }
    }
}

/// Runs the agent as a daemon listening on `socket` (mode 0660) until it is killed.
pub async fn run_listen(cfg: AgentConfig, socket: &Path) -> anyhow::Result<()> {
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            anyhow::bail!(
                "another agent already listens on {}; stop it first",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    tracing::info!(
        "agent {} listening on {} (state in {})",
        cfg.runner,
        socket.display(),
        cfg.state_dir.display()
    );
    let (inputs_tx, inputs) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    next += 1;
                    let (r, w) = stream.into_split();
                    attach(next, r, w, inputs_tx.clone());
                }
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    serve(cfg, inputs, false).await
}

/// Starts the reader and the writer of one connection; returns the writer's task.
fn attach<R, W>(
    conn: u64,
    input: R,
    output: W,
    inputs: mpsc::UnboundedSender<Input>,
) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(protocol::write_lines(rx, output));
    let events = inputs.clone();
    let reader = tokio::spawn(async move {
        let mut input = BufReader::new(input);
        let reason = loop {
            match protocol::read_line(&mut input, protocol::MAX_LINE).await {
                Ok(Line::Text(line)) => {
                    if events.send(Input::Line { conn, line }).is_err() {
                        return;
                    }
                }
                Ok(Line::TooLong(len)) => {
                    tracing::warn!(
                        "a message of {len} bytes, over the limit of {}, was dropped",
                        protocol::MAX_LINE
                    )
                }
                Ok(Line::Eof) => break "end of input".to_string(),
                Err(e) => break format!("reading failed: {e}"),
            }
        };
        let _ = events.send(Input::Closed { conn, reason });
    });
    let _ = inputs.send(Input::Opened {
        conn,
        tx,
        reader: reader.abort_handle(),
    });
    writer
}

/// The agent loop. With `exit_on_close` (stdio) the first closed connection ends it, after the
/// attempts this process runs have ended.
async fn serve(
    cfg: AgentConfig,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    exit_on_close: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (mut agent, mut notices) = Agent::new(&cfg).await?;
    super::daemon::note_slow("opening its journal and executor", &cfg.runner, started);
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut master: Option<u64> = None;
    loop {
        tokio::select! {
            input = inputs.recv() => {
                let Some(input) = input else { break };
                match input {
                    Input::Opened { conn, tx, reader } => {
                        conns.insert(conn, Conn { tx, reader });
                    }
                    Input::Closed { conn, reason } => {
                        if let Some(c) = conns.remove(&conn) {
                            agent.outbox().close(&c.tx);
                        }
                        if master == Some(conn) {
                            tracing::info!("agent {}: the master went away ({reason})", agent.runner());
                            master = None;
                            if exit_on_close {
                                break;
                            }
                        }
                    }
                    Input::Line { conn, line } => {
                        if line.trim().is_empty() {
                            continue;
                        }
                        let Some(tx) = conns.get(&conn).map(|c| c.tx.clone()) else { continue };
                        match protocol::decode::<ToAgent>(&line) {
                            Ok(ToAgent::Hello { version, runner }) => {
                                if version != PROTOCOL_VERSION {
                                    let _ = tx.send(FromAgent::Error { message: format!(
                                        "protocol version mismatch: master speaks {version}, this agent speaks {PROTOCOL_VERSION}; run the same datarun on both") });
                                    drop_conn(&mut conns, conn);
                                    continue;
                                }
                                if runner != agent.runner() {
                                    tracing::warn!("agent {} is addressed as {runner}", agent.runner());
                                }
                                // The newest master wins: an older connection is half dead.
                                if let Some(old) = master.filter(|&m| m != conn) {
                                    tracing::info!("agent {}: a new master connection replaces the old one", agent.runner());
                                    drop_conn(&mut conns, old);
                                }
                                master = Some(conn);
                                agent.hello(tx).await?;
                            }
                            Ok(ToAgent::Ping { seq }) => {
                                let _ = tx.send(FromAgent::Pong { seq });
                            }
                            Ok(msg) if master == Some(conn) => agent.handle(msg),
                            Ok(_) => {
                                let _ = tx.send(FromAgent::Error { message: "the first message must be hello".into() });
                            }
                            Err(e) => {
                                let _ = tx.send(FromAgent::Error { message: e });
                            }
                        }
                    }
                }
            }
            Some(notice) = notices.recv() => agent.notice(notice).await,
        }
    }
    // The master is gone: finish what runs here; results stay in the journal for the next agent.
    drop(conns);
    agent.retire().await;
    while !agent.running.is_empty() {
        match notices.recv().await {
            Some(notice) => agent.notice(notice).await,
            None => break,
        }
    }
    Ok(())
}

/// Closes a connection from our side: its writer ends (EOF to the peer), its reader stops.
fn drop_conn(conns: &mut HashMap<u64, Conn>, conn: u64) {
    if let Some(c) = conns.remove(&conn) {
        c.reader.abort();
    }
}
