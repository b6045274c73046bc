//! The CLI's HTTP client. It finds the master by `--server`/`DATARUN_SERVER` and the token by
//! `--token`/`DATARUN_TOKEN`; failing those, from the files `datarun serve` writes into its data
//! directory (`server`, `admin.token`), so local use needs no copying of secrets.

use anyhow::{anyhow, bail, Context, Result};
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

impl Client {
    pub fn new(server: Option<String>, token: Option<String>, data_dir: &Path) -> Result<Client> {
        let base = match server.or_else(|| read_trimmed(&data_dir.join("server"))) {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => bail!(
                "no server given and none found in {}: start one with `datarun serve`, or pass --server URL (or set DATARUN_SERVER)",
                data_dir.display()
            ),
        };
        let token = match token.or_else(|| read_trimmed(&data_dir.join("admin.token"))) {
            Some(t) => t,
            None => bail!("no token given: pass --token (or set DATARUN_TOKEN); `datarun token create NAME` on the master makes one"),
        };
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .context("cannot build the HTTP client")?;
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
        let resp = resp.with_context(|| {
            format!("cannot reach the datarun master at {} ({what})", self.base)
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
        Err(anyhow!("{what}: the master answered {status}: {message}"))
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
