//! The small clients of an agent daemon's socket: `datarun agent --connect SOCKET` joins
//! stdin/stdout to it (what the master runs over ssh), `--ping SOCKET` is the health check.

use crate::protocol::{self, FromAgent, ToAgent};
use anyhow::Context;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

async fn dial(socket: &Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(socket).await.with_context(|| {
        format!(
            "no agent answers on {} (is the datarun agent service running? \
             `datarun provision` installs and starts it)",
            socket.display()
        )
    })
}

/// Copies stdin to the daemon and the daemon to stdout until the daemon closes its side.
pub async fn connect(socket: &Path) -> anyhow::Result<()> {
    let stream = dial(socket).await?;
    let (mut from_daemon, mut to_daemon) = stream.into_split();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut to_daemon).await;
        // The master hung up: tell the daemon, which then closes its side.
        let _ = to_daemon.shutdown().await;
    });
    let mut stdout = tokio::io::stdout();
    tokio::io::copy(&mut from_daemon, &mut stdout)
        .await
        .context("relaying the agent's messages")?;
    let _ = stdout.flush().await;
    Ok(())
}

/// Pings the daemon: Ok when it answers within `timeout`.
pub async fn ping(socket: &Path, timeout: Duration) -> anyhow::Result<()> {
    let exchange = async {
        let stream = dial(socket).await?;
        let (r, mut w) = stream.into_split();
        w.write_all(protocol::encode(&ToAgent::Ping { seq: 1 }).as_bytes())
            .await?;
        let mut lines = BufReader::new(r).lines();
        while let Some(line) = lines.next_line().await? {
            if let Ok(FromAgent::Pong { seq: 1 }) = protocol::decode::<FromAgent>(&line) {
                return Ok(());
            }
        }
        anyhow::bail!("the agent on {} closed without answering", socket.display())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| {
            format!(
                "the agent on {} did not answer within {timeout:?}",
                socket.display()
            )
        })?
}
