//! Which master is active. On SQLite a master is always active. On PostgreSQL any number of
//! masters share one database and the holder of the leadership lease (`store::pg::lease`) is
//! the active one: it runs the master loop, talks to the agents, runs the maintenance
//! schedule and writes. The others are standby: they answer `GET /api/v1/health` (with the
//! active master's advertised URL), serve the reads the database answers alone
//! ([`STANDBY_READS`]: folds, their logs, outputs and provenance, arrays, sweeps, webhooks,
//! the queue's counts, the event feed, whose change signal a standby reads from the database,
//! datasets, splits, submissions and their results as the active master recorded them;
//! through the API on a standby's `MasterHandle`), and refuse everything else (writes, and
//! reads only the active master can answer: runners, `analyze`) with a JSON 503 naming the
//! active master, until they take the lease. The HTTP app
//! (`app`) dispatches to the API once it is installed (`Role::activate`), so one listener
//! serves both roles.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::{Arc, RwLock};
use tower::ServiceExt;

/// The leadership holder names a master by its advertised URL, then ` #` and a nonce (so a
/// restarted master at the same URL is another holder).
pub fn holder_name(advertise: &str) -> String {
    use rand::RngCore;
    let mut nonce = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut nonce);
    format!("{advertise} #{}", hex::encode(nonce))
}

/// The URL part of a holder name (`holder_name`).
pub fn holder_url(holder: &str) -> &str {
    holder.split(" #").next().unwrap_or(holder)
}

/// This master's role, shared by its HTTP app and its start-up.
#[derive(Clone)]
pub struct Role {
    inner: Arc<RwLock<State>>,
    store: &'static str,
    advertise: String,
}

/// The `/api/v1` paths a standby answers to GET (and HEAD), by segment: `*` is one segment,
/// `**` the rest of the path.
pub const STANDBY_READS: &[&str] = &[
    "folds",
    "folds/*",
    "folds/*/log",
    "folds/*/outputs/**",
    "folds/*/provenance",
    "queue",
    "arrays/*",
    "arrays/*/*",
    "sweeps/*",
    "webhooks",
    "webhook-secret",
    "openapi.json",
    "events",
    "datasets",
    "datasets/*",
    "datasets/*/table",
    "datasets/*/files/**",
    "datasets/*/splits",
    "datasets/*/leaderboard",
    "splits/*",
    "submissions",
    "submissions/*",
    "submission-folds/*",
    "submission-folds/*/predictions/*",
];

/// Whether a standby answers `method path` (see [`STANDBY_READS`]).
fn standby_reads(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    if *method != Method::GET && *method != Method::HEAD {
        return false;
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    let asked: Vec<&str> = rest.split('/').collect();
    STANDBY_READS.iter().any(|pattern| {
        let pattern: Vec<&str> = pattern.split('/').collect();
        match pattern.last() {
            Some(&"**") => {
                asked.len() >= pattern.len()
                    && pattern[..pattern.len() - 1]
                        .iter()
                        .zip(&asked)
                        .all(|(p, a)| *p == "*" || p == a)
            }
            _ => {
                asked.len() == pattern.len()
                    && pattern.iter().zip(&asked).all(|(p, a)| *p == "*" || p == a)
            }
        }
    })
}

struct State {
    /// The API, once this master is active.
    api: Option<Router>,
    /// The API a standby serves its reads with (`serve_reads`), on a standby's handle.
    reads: Option<Router>,
    /// The active master's advertised URL as last seen (None: no live lease seen).
    active: Option<String>,
}

impl Role {
    /// A standby (PostgreSQL) or, with `api` already, an active master.
    pub fn new(store: &'static str, advertise: String) -> Role {
        Role {
            inner: Arc::new(RwLock::new(State {
                api: None,
                reads: None,
                active: None,
            })),
            store,
            advertise,
        }
    }

    /// The URL this master is advertised as.
    pub fn advertise(&self) -> &str {
        &self.advertise
    }

    pub fn is_active(&self) -> bool {
        self.inner.read().expect("role lock").api.is_some()
    }

    /// Records who the active master is (from the leadership row), while standby.
    pub fn set_active_url(&self, url: Option<String>) {
        self.inner.write().expect("role lock").active = url;
    }

    /// While standby, answer `STANDBY_READS` with `api` (built on `MasterHandle::standby`).
    pub fn serve_reads(&self, api: Router) {
        self.inner.write().expect("role lock").reads = Some(api);
    }

    /// This master is the active one from now on: its API answers.
    pub fn activate(&self, api: Router) {
        let mut s = self.inner.write().expect("role lock");
        s.api = Some(api);
        s.active = Some(self.advertise.clone());
    }

    /// What `GET /api/v1/health` answers.
    pub fn health(&self) -> serde_json::Value {
        let s = self.inner.read().expect("role lock");
        json!({
            "ok": true,
            "version": env!("CARGO_PKG_VERSION"),
            "role": if s.api.is_some() { "active" } else { "standby" },
            "store": self.store,
            "advertise": self.advertise,
            "active": s.active,
        })
    }

    /// The whole HTTP app: health here, everything else to the API when active, else a 503
    /// naming the active master.
    pub fn app(&self) -> Router {
        let health = self.clone();
        let me = self.clone();
        Router::new()
            .route(
                "/api/v1/health",
                get(move || {
                    let role = health.clone();
                    async move { Json(role.health()) }
                }),
            )
            .fallback(move |req: Request| {
                let role = me.clone();
                async move { role.dispatch(req).await }
            })
    }

    async fn dispatch(&self, req: Request) -> Response {
        let (api, reads, active) = {
            let s = self.inner.read().expect("role lock");
            (s.api.clone(), s.reads.clone(), s.active.clone())
        };
        let api = api.or_else(|| reads.filter(|_| standby_reads(req.method(), req.uri().path())));
        match api {
            Some(api) => match api.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            },
            None => {
                let message = match &active {
                    Some(url) => format!(
                        "this master ({}) is a standby (it answers reads of folds, arrays, sweeps, \
                         webhooks, events and the queue); the active master is {url}: send requests there",
                        self.advertise
                    ),
                    None => format!(
                        "this master ({}) is a standby and no master is active right now; \
                         one takes over within the leadership lease: try again shortly",
                        self.advertise
                    ),
                };
                let body =
                    json!({"error": {"code": "unavailable", "message": message}, "active": active});
                let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                r.headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::standby_reads;
    use axum::http::Method;

    #[test]
    fn a_standby_answers_reads_of_the_database_only() {
        let get = |p: &str| standby_reads(&Method::GET, p);
        assert!(get("/api/v1/folds"));
        assert!(get("/api/v1/folds/7"));
        assert!(get("/api/v1/folds/7/outputs/a/b.txt"));
        assert!(get("/api/v1/arrays/3/1"));
        assert!(!get("/api/v1/folds/7/outputs"));
        assert!(get("/api/v1/events"), "the feed follows the database");
        assert!(!get("/api/v1/folds/7/analyze"), "analyze needs the runners");
        assert!(!get("/api/v1/runners"), "runners are the active master's");
        assert!(!get("/folds"));
        assert!(!standby_reads(&Method::POST, "/api/v1/folds"));
        assert!(!standby_reads(&Method::DELETE, "/api/v1/folds/7"));
        // The submission layer's reads; its writes (the feed takes results) are the active's.
        assert!(get("/api/v1/datasets/2/splits"));
        assert!(get("/api/v1/submission-folds/4/predictions/test"));
        assert!(get("/api/v1/datasets/2/files/data/train.csv"));
        assert!(!standby_reads(&Method::POST, "/api/v1/datasets/2/splits"));
        assert!(!standby_reads(&Method::POST, "/api/v1/results/new"));
        assert!(!standby_reads(&Method::DELETE, "/api/v1/datasets/2"));
    }
}
