//! The CLI's HTTP client. It finds the master by `--server`/`DATARUN_SERVER` and the token by
//! `--token`/`DATARUN_TOKEN`; failing those, from the files `datarun serve` writes into its data
//! directory (`server`, `admin.token`), so local use needs no copying of secrets. The admin
//! token read there goes only to the master that same directory names: with another
//! `--server`, a token must be given. HTTPS masters with a private CA are trusted with
//! `--ca-cert`/`DATARUN_CA_CERT`, besides the system's roots.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default data directory: $DATARUN_DATA_DIR, else $XDG_DATA_HOME/datarun, else
/// ~/.local/share/datarun.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DATARUN_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("datarun");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/datarun")
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A master's address: scheme, host and port (`http://h:80/` and `http://h` are one).
fn origin(url: &str) -> Result<(String, String, Option<u16>)> {
    let parsed = reqwest::Url::parse(url.trim())
        .with_context(|| format!("{url:?} is not a master URL (e.g. https://host:4680)"))?;
    Ok((
        parsed.scheme().to_string(),
        parsed.host_str().unwrap_or("").to_ascii_lowercase(),
        parsed.port_or_known_default(),
    ))
}

/// The data dir's admin token, for `base` only if it is the master that data dir names.
fn local_admin_token(base: &str, local: Option<&str>, data_dir: &Path) -> Result<String> {
    let path = data_dir.join("admin.token");
    let same = match local {
        Some(local) => origin(local)? == origin(base)?,
        None => false,
    };
    if !same {
        let withheld = if path.exists() {
            format!(
                " (the admin token in {} is sent only to the master that data dir names, {})",
                path.display(),
                local.unwrap_or("none")
            )
        } else {
            String::new()
        };
        eprintln!(
            "error: no token for {base}{withheld}: pass --token TOKEN (or set DATARUN_TOKEN) for it; `datarun token create NAME` on its machine makes one"
        );
        return Err(super::Exit(super::exit::USAGE).into());
    }
    match read_trimmed(&path) {
        Some(t) => Ok(t),
        None => bail!("no token given: pass --token (or set DATARUN_TOKEN); `datarun token create NAME` on the master makes one"),
    }
}

/// The CA certificates of a PEM file, to trust besides the system's roots.
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("--ca-cert {}: cannot read it", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("--ca-cert {}: not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--ca-cert {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

impl Client {
    pub fn new(
        server: Option<String>,
        token: Option<String>,
        ca_cert: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Client> {
        let local = read_trimmed(&data_dir.join("server"));
        let base = match server.or_else(|| local.clone()) {
            Some(s) => s.trim().trim_end_matches('/').to_string(),
            None => bail!(
                "no server given and none found in {}: start one with `datarun serve`, or pass --server URL (or set DATARUN_SERVER)",
                data_dir.display()
            ),
        };
        origin(&base)?;
        let token = match token {
            Some(t) => t,
            None => local_admin_token(&base, local.as_deref(), data_dir)?,
        };
        let mut http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300));
        // A plain-HTTP master needs no trust store: loading the system's (a file per CA)
        // cost about 8 ms of every command's start, as much as a fold's whole round trip.
        if base.starts_with("http://") {
            http = http.tls_built_in_root_certs(false);
        }
        if let Some(path) = ca_cert {
            for cert in ca_certificates(path)? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().context("cannot build the HTTP client")?;
        Ok(Client { base, token, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    /// Sends a request; over the token's rate limit (429) waits as `Retry-After` says and
    /// sends it again, for at most a minute in all.
    fn send(
        &self,
        what: &str,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response> {
        let mut waited = Duration::ZERO;
        loop {
            let Some(again) = req.try_clone() else {
                return self.check(what, req.send());
            };
            let resp = again.send();
            let retry = match &resp {
                Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.clamp(1, 10))),
                _ => None,
            };
            match retry {
                Some(wait) if waited + wait <= Duration::from_secs(60) => {
                    std::thread::sleep(wait);
                    waited += wait;
                }
                _ => return self.check(what, resp),
            }
        }
    }

    fn check(
        &self,
        what: &str,
        resp: reqwest::Result<reqwest::blocking::Response>,
    ) -> Result<reqwest::blocking::Response> {
        let resp = resp.map_err(|e| {
            let untrusted = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .any(|e| e.to_string().contains("certificate"));
            let hint = if untrusted {
                ": its TLS certificate is not trusted; pass --ca-cert FILE (or set DATARUN_CA_CERT) with the CA that signed it"
            } else {
                ""
            };
            anyhow::Error::new(super::exit::Failure {
                code: super::exit::UNREACHABLE,
                message: format!("{e}"),
            })
            .context(format!(
                "cannot reach the datarun master at {} ({what}){hint}",
                self.base
            ))
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or(text);
        Err(super::exit::Failure {
            code: super::exit::for_status(status.as_u16()),
            message: format!("{what}: the master answered {status}: {message}"),
        }
        .into())
    }

    /// `GET /health`: which master answers and its role (`master::role`); Null when it does
    /// not say (an older master).
    pub fn health(&self) -> Value {
        self.get::<Value>("/health").unwrap_or(Value::Null)
    }

    /// The line above `queue status` and `runners status` tables on PostgreSQL, where
    /// several masters may serve: which one is active (one master on SQLite: no line).
    pub fn master_line(health: &Value) -> Option<String> {
        if health["store"] != "postgres" {
            return None;
        }
        let role = health["role"].as_str()?;
        let store = health["store"].as_str().unwrap_or("?");
        let me = health["advertise"].as_str().unwrap_or("?");
        Some(match (role, health["active"].as_str()) {
            ("active", _) => format!("master: {me} (active, {store} store)"),
            (_, Some(active)) => {
                format!("master: {active} is active ({me} is a standby, {store} store)")
            }
            (_, None) => format!("master: none active ({me} is a standby, {store} store)"),
        })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.bodiless(reqwest::Method::GET, path)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.bodiless(reqwest::Method::DELETE, path)
    }

    fn bodiless<T: DeserializeOwned>(&self, method: reqwest::Method, path: &str) -> Result<T> {
        let resp = self.send(
            path,
            self.http
                .request(method, self.url(path))
                .bearer_auth(&self.token),
        )?;
        resp.json()
            .with_context(|| format!("{path}: unreadable answer"))
    }

    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self.send(path, self.http.get(self.url(path)).bearer_auth(&self.token))?;
        Ok(resp.bytes()?.to_vec())
    }

    /// A GET whose answer is read as it arrives (a followed log): `timeout` for the whole of
    /// it instead of the client's.
    pub fn get_stream(&self, path: &str, timeout: Duration) -> Result<reqwest::blocking::Response> {
        let req = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .timeout(timeout);
        self.send(path, req)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let resp = self.send(
            path,
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(body),
        )?;
        resp.json()
            .with_context(|| format!("{path}: unreadable answer"))
    }

    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T> {
        let req = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(body);
        let resp = self.send(path, req)?;
        resp.json()
            .with_context(|| format!("{path}: unreadable answer"))
    }
}
