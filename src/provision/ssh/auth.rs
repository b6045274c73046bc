//! Public-key authentication as OpenSSH does it: the identity files given (inventory, ssh
//! config, else `~/.ssh/id_*`), then the keys an `ssh-agent` holds (passphrase-protected keys
//! work through the agent). The first key the server accepts wins; when none does, the error
//! lists every key tried and why each was not usable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey};

use super::{identity, Client, SshError, SshTarget};

/// The signature hash for an RSA key (SHA-2 only: what the server announces, else sha-256).
async fn rsa_hash(handle: &Handle<Client>, algorithm: &Algorithm) -> Option<HashAlg> {
    if !matches!(algorithm, Algorithm::Rsa { .. }) {
        return None;
    }
    match handle.best_supported_rsa_hash().await {
        Ok(Some(Some(hash))) => Some(hash),
        _ => Some(HashAlg::Sha256),
    }
}

fn describe(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

fn lost(label: &str, e: impl std::fmt::Display) -> SshError {
    SshError::Handshake {
        host: label.to_string(),
        message: format!("authentication failed: {e}"),
    }
}

/// Authenticates `target.user`; `label` names the host in errors.
pub(super) async fn authenticate(
    handle: &mut Handle<Client>,
    target: &SshTarget,
    label: &str,
) -> Result<(), SshError> {
    let mut tried: Vec<String> = Vec::new();
    let lone_file = target.identity_files.len() == 1 && target.agent.is_none();
    for path in &target.identity_files {
        let key = match identity::load(path) {
            Ok(key) => key,
            // One key file and nothing else to try: the file's problem is the error.
            Err(reason) if lone_file => {
                return Err(SshError::Identity {
                    host: label.to_string(),
                    path: path.clone(),
                    reason,
                });
            }
            Err(reason) => {
                tried.push(format!("{}: not usable: {reason}", path.display()));
                continue;
            }
        };
        let what = format!("{} ({})", path.display(), key.algorithm().as_str());
        let hash = rsa_hash(handle, &key.algorithm()).await;
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        let result = handle
            .authenticate_publickey(&target.user, key)
            .await
            .map_err(|e| lost(label, e))?;
        if result.success() {
            tracing::debug!(host = %label, key = %what, "authenticated with a key file");
            return Ok(());
        }
        tried.push(format!("{what}: refused"));
    }
    if let Some(socket) = &target.agent {
        if try_agent(handle, target, label, socket, &mut tried).await? {
            return Ok(());
        }
    }
    if target.identity_files.is_empty() && target.agent.is_none() {
        tried.push("nothing: no identity file and no ssh-agent (SSH_AUTH_SOCK)".into());
    }
    Err(SshError::AuthRefused {
        host: label.to_string(),
        user: target.user.clone(),
        tried,
    })
}

/// Tries every key of the agent at `socket`; Ok(true) when one was accepted.
async fn try_agent(
    handle: &mut Handle<Client>,
    target: &SshTarget,
    label: &str,
    socket: &Path,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    let where_ = format!("ssh-agent at {}", socket.display());
    let mut agent = match AgentClient::connect_uds(socket).await {
        Ok(agent) => agent,
        Err(e) => {
            tried.push(format!("{where_}: cannot connect: {e}"));
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            tried.push(format!("{where_}: cannot list its keys: {e}"));
            return Ok(false);
        }
    };
    let keys: Vec<(PublicKey, String)> = identities
        .into_iter()
        .filter_map(|id| match id {
            AgentIdentity::PublicKey { key, comment } => Some((key, comment)),
            AgentIdentity::Certificate { .. } => None,
        })
        .collect();
    if keys.is_empty() {
        tried.push(format!("{where_}: it holds no key (add one with ssh-add)"));
        return Ok(false);
    }
    for (key, comment) in keys {
        let what = format!("{where_}: {} ({comment})", describe(&key));
        let hash = rsa_hash(handle, &key.algorithm()).await;
        match handle
            .authenticate_publickey_with(&target.user, key, hash, &mut agent)
            .await
        {
            Ok(result) if result.success() => {
                tracing::debug!(host = %label, key = %what, "authenticated through ssh-agent");
                return Ok(true);
            }
            Ok(_) => tried.push(format!("{what}: refused")),
            Err(russh::AgentAuthError::Send(e)) => return Err(lost(label, e)),
            Err(e) => tried.push(format!("{what}: the agent could not sign: {e}")),
        }
    }
    Ok(false)
}

/// The agent socket to use: `IdentityAgent` from the ssh config when it says one (`none`: no
/// agent; `SSH_AUTH_SOCK`: the variable), else `$SSH_AUTH_SOCK` when set.
pub(super) fn agent_socket(config: Option<&Option<PathBuf>>) -> Option<PathBuf> {
    let from_env = || {
        std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    match config {
        Some(None) => None,
        Some(Some(p)) if p.as_os_str() == "SSH_AUTH_SOCK" || p.as_os_str() == "$SSH_AUTH_SOCK" => {
            from_env()
        }
        Some(Some(p)) => Some(p.clone()),
        None => from_env(),
    }
}
