//! Webhook delivery (README "Webhooks"). The store keeps each delivery as an outbox row,
//! made pending in the transaction that ends its fold, array or submission
//! (`store::webhooks`); this task in the master takes due rows, POSTs each body signed with
//! its token's secret, and records the attempt. At least once: a row is leased while it is
//! tried, so a master that dies meanwhile tries it again; receivers dedupe by `event_id`,
//! the same on every retry. Retries back off exponentially with jitter, up to
//! `max_attempts` or `give_up_after` since the end, then the row is `failed` with the reason.

pub mod guard;
pub mod sign;

use crate::store::{AttemptEnd, Delivery, Store};
pub use guard::Allow;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The most of a receiver's answer read (kept in `last_error` when it is not a 2xx).
const MAX_ANSWER: usize = 4 << 10;
/// How much of the answer a failure records.
const ANSWER_IN_ERROR: usize = 200;
/// How often due deliveries are looked for.
const POLL: Duration = Duration::from_millis(250);

/// `serve` flags for webhooks.
#[derive(clap::Args, Clone, Debug)]
pub struct WebhookArgs {
    /// Address ranges webhooks may call although they are loopback, private, link-local or
    /// otherwise internal (refused by default): `CIDR[,CIDR…]`, e.g. `10.0.0.0/8`.
    #[arg(long, value_name = "CIDRS", value_parser = Allow::parse)]
    pub webhook_allow: Option<Allow>,
    /// The first retry's delay; each next one doubles, up to --webhook-max-backoff.
    #[arg(long, default_value = "1s", value_parser = crate::cli::parse_duration, hide = true)]
    pub webhook_backoff: Duration,
    /// The longest delay between two attempts.
    #[arg(long, default_value = "10m", value_parser = crate::cli::parse_duration, hide = true)]
    pub webhook_max_backoff: Duration,
    /// Attempts before a delivery is given up.
    #[arg(long, default_value_t = 25, hide = true)]
    pub webhook_attempts: u32,
}

/// How deliveries are made.
#[derive(Clone, Debug)]
pub struct Config {
    pub allow: Allow,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
    /// Given up this long after the end, whatever the attempts.
    pub give_up_after: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// For the whole request, answer included.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow: Allow::default(),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_attempts: 25,
            give_up_after: Duration::from_secs(24 * 3600),
            concurrency: 16,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl From<&WebhookArgs> for Config {
    fn from(a: &WebhookArgs) -> Config {
        Config {
            allow: a.webhook_allow.clone().unwrap_or_default(),
            backoff: a.webhook_backoff,
            max_backoff: a.webhook_max_backoff.max(a.webhook_backoff),
            max_attempts: a.webhook_attempts.max(1),
            ..Config::default()
        }
    }
}

impl Config {
    /// The delay before attempt `attempt + 1` (after `attempt` failed ones): doubling from
    /// `backoff`, at most `max_backoff`, with "equal jitter" (half fixed, half random).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let d = exp.min(self.max_backoff);
        let half = d / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }
}

/// Delivers due webhooks until the process ends.
pub async fn run(store: Store, cfg: Config) {
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.concurrency));
    // A lease longer than one attempt can take.
    let lease = (cfg.timeout + crate::webhooks::guard::RESOLVE_TIMEOUT + Duration::from_secs(30))
        .as_millis() as i64;
    loop {
        tokio::time::sleep(POLL).await;
        let free = slots.available_permits() as u32;
        if free == 0 {
            continue;
        }
        let due = match store.due_webhooks(lease, free).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("webhooks: cannot read the deliveries due: {e}");
                continue;
            }
        };
        for d in due {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (store, cfg) = (store.clone(), cfg.clone());
            tokio::spawn(async move {
                let end = attempt(&cfg, &d).await;
                match &end {
                    AttemptEnd::Delivered { status } => {
                        tracing::info!(event_id = %d.event_id, status, "webhook delivered")
                    }
                    AttemptEnd::Failed {
                        error, retry_at, ..
                    } => {
                        tracing::warn!(event_id = %d.event_id, attempt = d.attempts + 1, retry = retry_at.is_some(), "webhook not delivered: {error}")
                    }
                }
                if let Err(e) = store.webhook_attempted(d.id, end).await {
                    tracing::warn!("webhooks: cannot record delivery {}: {e}", d.id);
                }
                drop(permit);
            });
        }
    }
}

/// One attempt at `d`, and what follows from it.
async fn attempt(cfg: &Config, d: &Delivery) -> AttemptEnd {
    let (status, error) = match post(cfg, d).await {
        Ok(status) if (200..300).contains(&status) => {
            return AttemptEnd::Delivered { status };
        }
        Ok(status) => (Some(status), format!("HTTP {status}")),
        Err((status, e)) => (status, e),
    };
    let now = crate::store::now_ms();
    let attempts = d.attempts + 1;
    let retry_at = now + cfg.delay(attempts).as_millis() as i64;
    let too_late = retry_at - d.ended_at > cfg.give_up_after.as_millis() as i64;
    let retry_at = (attempts < cfg.max_attempts && !too_late).then_some(retry_at);
    let error = if retry_at.is_none() {
        format!("{error}; given up after {attempts} attempts")
    } else {
        error
    };
    AttemptEnd::Failed {
        status,
        error,
        retry_at,
    }
}

/// POSTs `d`'s body to the addresses its URL resolves to (each checked); the answer's status,
/// or the status (if any) and why it failed.
async fn post(cfg: &Config, d: &Delivery) -> Result<u16, (Option<u16>, String)> {
    let url = guard::check_url("webhook", &d.url).map_err(|e| (None, e.message().to_string()))?;
    let addrs = guard::resolve("webhook", &url, &cfg.allow)
        .await
        .map_err(|e| (None, e))?;
    let mut client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.timeout)
        .user_agent(concat!("datarun/", env!("CARGO_PKG_VERSION")));
    if let Some(host) = url.host_str().filter(|h| !h.starts_with('[')) {
        // Connect to the checked addresses, never to a second lookup's.
        client = client.resolve_to_addrs(host, &addrs);
    }
    let client = client.build().map_err(|e| (None, e.to_string()))?;
    let body = d.body.clone().into_bytes();
    let mut resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Datarun-Event", &d.event_id)
        .header("X-Datarun-Signature", sign::signature(&d.secret, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| (None, error_chain(&e)))?;
    let status = resp.status().as_u16();
    // Read a little of the answer (a receiver's reason), never more.
    let mut answer = Vec::new();
    while answer.len() < MAX_ANSWER {
        match resp.chunk().await {
            Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
            _ => break,
        }
    }
    if (200..300).contains(&status) {
        return Ok(status);
    }
    let text = String::from_utf8_lossy(&answer[..answer.len().min(ANSWER_IN_ERROR)]);
    let text = text.trim();
    Err((
        Some(status),
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {text}")
        },
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let cfg = Config::default();
        for attempt in 1..40 {
            let d = cfg.delay(attempt);
            let full = (cfg.backoff * (1 << (attempt - 1).min(20))).min(cfg.max_backoff);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} of {full:?}"
            );
        }
        assert!(cfg.delay(30) <= Duration::from_secs(600));
    }
}
