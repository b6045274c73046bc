//! Loading the client's private key (identity file).

use std::path::Path;

use russh::keys::ssh_key::PrivateKey;

const ENCRYPTED: &str = "the key is protected by a passphrase, which datarun does not ask for: \
     load it into ssh-agent (`ssh-add KEY`, with SSH_AUTH_SOCK set for datarun) and datarun \
     uses it through the agent, or make an unencrypted copy with \
     `cp KEY COPY && ssh-keygen -p -N '' -f COPY`";

/// Reads an unencrypted private key in OpenSSH format (or PEM, for older RSA keys).
/// The error is the reason, to be wrapped with the host and path by the caller.
pub(super) fn load(path: &Path) -> Result<PrivateKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "not a text file (an OpenSSH private key is expected)".to_string())?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err("the file is empty".into());
    }
    if trimmed.starts_with("ssh-") || trimmed.starts_with("ecdsa-") {
        return Err(format!(
            "this is a public key; give the private key (often the same name without .pub): {}",
            path.with_extension("").display()
        ));
    }
    if trimmed.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let key = PrivateKey::from_openssh(trimmed)
            .map_err(|e| format!("not a valid OpenSSH private key: {e}"))?;
        if key.is_encrypted() {
            return Err(ENCRYPTED.into());
        }
        return Ok(key);
    }
    if !trimmed.starts_with("-----BEGIN ") {
        return Err(
            "not a private key (expected `-----BEGIN OPENSSH PRIVATE KEY-----`, \
                    as written by `ssh-keygen -t ed25519`)"
                .into(),
        );
    }
    match russh::keys::decode_secret_key(trimmed, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(ENCRYPTED.into()),
        Err(e) => Err(format!("cannot decode the private key: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load(&dir.path().join("nope")).unwrap_err();
        assert!(missing.contains("cannot read it"), "{missing}");

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "hello world\n").unwrap();
        assert!(load(&garbage).unwrap_err().contains("not a private key"));

        let public = dir.path().join("id.pub");
        std::fs::write(&public, "ssh-ed25519 AAAA x\n").unwrap();
        assert!(load(&public).unwrap_err().contains("public key"));

        let broken = dir.path().join("broken");
        std::fs::write(
            &broken,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(load(&broken).unwrap_err().contains("not a valid OpenSSH"));
    }
}
