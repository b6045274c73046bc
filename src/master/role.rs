//! Which master is active. On SQLite a master is always active. On PostgreSQL any number of
//! masters share one database and the holder of the leadership lease (`store::pg::lease`) is
//! the active one: it runs the master loop, talks to the agents, runs the maintenance
//! schedule and writes. The others are standby: they answer `GET /api/v1/health` (with the
//! active master's advertised URL) and refuse everything else with a JSON 503 naming it, until
//! they take the lease. The HTTP app (`app`) dispatches to the API once it is installed
//! (`Role::activate`), so one listener serves both roles.

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

struct State {
    /// The API, once this master is active.
    api: Option<Router>,
    /// The active master's advertised URL as last seen (None: no live lease seen).
    active: Option<String>,
}

impl Role {
    /// A standby (PostgreSQL) or, with `api` already, an active master.
    pub fn new(store: &'static str, advertise: String) -> Role {
        Role {
            inner: Arc::new(RwLock::new(State {
                api: None,
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
        let (api, active) = {
            let s = self.inner.read().expect("role lock");
            (s.api.clone(), s.active.clone())
        };
        match api {
            Some(api) => match api.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            },
            None => {
                let message = match &active {
                    Some(url) => format!(
                        "this master ({}) is a standby; the active master is {url}: send requests there",
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
