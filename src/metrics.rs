//! The master's Prometheus metrics (`GET /metrics`, the text format of `prometheus-client`).
//!
//! Two kinds: what happens is counted where it happens (submissions, results, matching
//! cycles, store operations, API requests), in one process-wide registry the hooks reach
//! through `get()`; what *is* (folds per queue and state, runners' slots and states) is read
//! at scrape time from the store's `fold_counts` table and the master's published view, never
//! by a scan of the queue. No metric has an owner label: the page tells nothing per owner.
//! Every label's values are bounded: queues (at most [`QUEUE_SERIES`], tenants name them) and
//! states from `fold_counts`, runner names from
//! the inventory, outcomes and fold states from the model, store operations from the code
//! (the name of the store method that sent the job), routes as matched path templates.
//!
//! Auth: an admin bearer token, unless `serve --metrics-public` (README "Metrics").

use crate::api::{ApiError, ApiState};
use crate::model::{FoldState, Metrics as FoldMetrics, Outcome};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The content type of what `prometheus-client` writes: the OpenMetrics text format (which
/// Prometheus scrapes; it ends with `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    outcome: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    kind: &'static str,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueState {
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunnerLabel {
    runner: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunnerStateLabels {
    runner: String,
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the master.
pub struct Metrics {
    registry: Registry,
    submitted: Family<StateLabel, Counter>,
    results: Family<ResultLabels, Counter>,
    fold_wall: Histogram,
    fold_cpu: Histogram,
    fold_peak_memory: Histogram,
    cycle_seconds: Histogram,
    cycle_decisions: Histogram,
    store_ops: HistogramFamily<StoreLabels>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: HistogramFamily<RouteLabel>,
    // Read at scrape time (see `refresh`).
    folds: Family<QueueState, Gauge>,
    slots_total: Family<RunnerLabel, Gauge>,
    slots_used: Family<RunnerLabel, Gauge>,
    runner_state: Family<RunnerStateLabels, Gauge>,
    /// One scrape at a time refreshes the gauges and encodes them.
    scrape: tokio::sync::Mutex<()>,
}

fn store_histogram() -> Histogram {
    // 50 µs .. 1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

fn http_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Seconds from 100 ms to a day.
const RUN_SECONDS: [f64; 14] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 43200.0, 86400.0,
];

/// Queues with series of their own in `datarun_folds`, at most: tenants name queues, and a
/// series per name would let one batch of folds add thousands of series for good. The
/// queues the inventory names come first, then the fullest; the rest are summed as
/// [`OTHER_QUEUES`].
pub const QUEUE_SERIES: usize = 64;
pub const OTHER_QUEUES: &str = "(other)";

/// `counts` (queue, state, folds) with at most [`QUEUE_SERIES`] queues: when there are more,
/// the `named` ones first, then by folds in all (most first, then by name), and the others
/// summed per state under [`OTHER_QUEUES`].
pub fn bounded_queues(
    counts: Vec<(String, FoldState, i64)>,
    named: &std::collections::HashSet<String>,
) -> Vec<(String, FoldState, i64)> {
    let mut totals: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (q, _, n) in &counts {
        *totals.entry(q.as_str()).or_default() += n;
    }
    if totals.len() <= QUEUE_SERIES {
        return counts;
    }
    let mut order: Vec<(&str, i64)> = totals.into_iter().collect();
    order.sort_by(|a, b| (!named.contains(a.0), -a.1, a.0).cmp(&(!named.contains(b.0), -b.1, b.0)));
    let kept: std::collections::HashSet<String> = order[..QUEUE_SERIES - 1]
        .iter()
        .map(|(q, _)| q.to_string())
        .collect();
    let mut other: std::collections::BTreeMap<&'static str, (FoldState, i64)> =
        std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (q, state, n) in counts {
        if kept.contains(&q) {
            out.push((q, state, n));
        } else {
            other.entry(state.as_str()).or_insert((state, 0)).1 += n;
        }
    }
    out.extend(
        other
            .into_values()
            .map(|(state, n)| (OTHER_QUEUES.to_string(), state, n)),
    );
    out
}

/// The runner states of `datarun_runner_state` (RunnerStatus::state, bounded).
pub const RUNNER_STATES: [&str; 5] = ["ready", "connecting", "disconnected", "drained", "removed"];

/// The bounded state of a runner from its status line ("ready", "not connected: ...").
pub fn runner_state(status: &str) -> &'static str {
    if status == "ready" {
        "ready"
    } else if status.starts_with("removed") {
        "removed"
    } else if status.starts_with("drained") {
        "drained"
    } else if status.starts_with("connecting") {
        "connecting"
    } else {
        "disconnected"
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("datarun");
        let submitted = Family::<StateLabel, Counter>::default();
        registry.register(
            "folds_submitted",
            "Folds put in the queue (every path: folds, submissions, /runapp/, custom splits), by the state they start in (idle, or held when they can never run)",
            submitted.clone(),
        );
        let results = Family::<ResultLabels, Counter>::default();
        registry.register(
            "fold_results",
            "Attempts ended and recorded, by outcome (success, exit_code, lost, ...) and the state their fold moved to (done, failed, held, idle for a retry or requeue)",
            results.clone(),
        );
        let fold_wall = Histogram::new(RUN_SECONDS);
        registry.register(
            "fold_wall_seconds",
            "Wall-clock time of attempts that ran, observed when their results are recorded",
            fold_wall.clone(),
        );
        let fold_cpu = Histogram::new(RUN_SECONDS);
        registry.register(
            "fold_cpu_seconds",
            "User + system CPU time of attempts that ran (the whole process tree)",
            fold_cpu.clone(),
        );
        let fold_peak_memory = Histogram::new(exponential_buckets(1024.0 * 1024.0, 4.0, 10));
        registry.register(
            "fold_peak_memory_bytes",
            "Peak resident memory of attempts that ran",
            fold_peak_memory.clone(),
        );
        let cycle_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "schedule_cycle_seconds",
            "Duration of one matching cycle of the master loop (follow the store, match, commit)",
            cycle_seconds.clone(),
        );
        let cycle_decisions = Histogram::new([
            0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            10000.0,
        ]);
        registry.register(
            "schedule_decisions",
            "Folds placed on runners per matching cycle",
            cycle_decisions.clone(),
        );
        let store_ops: HistogramFamily<StoreLabels> = Family::new_with_constructor(store_histogram);
        registry.register(
            "store_operation_seconds",
            "Time the store spends on one operation, by kind (write: a job on the writer thread; read: a query on a reader; fsync: making a group of writes durable) and op (the store method)",
            store_ops.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests answered, by method, route (the matched path template; \"unmatched\" otherwise) and status",
            http_requests.clone(),
        );
        let http_seconds: HistogramFamily<RouteLabel> =
            Family::new_with_constructor(http_histogram);
        registry.register(
            "http_request_seconds",
            "Time to an API answer's head, by route",
            http_seconds.clone(),
        );
        let folds = Family::<QueueState, Gauge>::default();
        registry.register(
            "folds",
            "Folds now in each queue and state (from the store's fold_counts table)",
            folds.clone(),
        );
        let slots_total = Family::<RunnerLabel, Gauge>::default();
        registry.register(
            "runner_slots",
            "Slots a runner has (from the inventory)",
            slots_total.clone(),
        );
        let slots_used = Family::<RunnerLabel, Gauge>::default();
        registry.register(
            "runner_slots_used",
            "Slots of a runner taken by attempts (running, or being cancelled)",
            slots_used.clone(),
        );
        let runner_state = Family::<RunnerStateLabels, Gauge>::default();
        registry.register(
            "runner_state",
            "1 for the state a runner is in (ready, connecting, disconnected, drained, removed), 0 for the others",
            runner_state.clone(),
        );
        Metrics {
            registry,
            submitted,
            results,
            fold_wall,
            fold_cpu,
            fold_peak_memory,
            cycle_seconds,
            cycle_decisions,
            store_ops,
            http_requests,
            http_seconds,
            folds,
            slots_total,
            slots_used,
            runner_state,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Folds inserted in the queue, in the state they start in.
    pub fn submitted(&self, state: FoldState, n: u64) {
        self.submitted
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .inc_by(n);
    }

    /// A result recorded: its fold moved to `state`.
    pub fn result(&self, outcome: &Outcome, measured: &FoldMetrics, state: FoldState) {
        self.results
            .get_or_create(&ResultLabels {
                outcome: outcome.kind(),
                state: state.as_str(),
            })
            .inc();
        // A lost attempt measured nothing.
        if !matches!(outcome, Outcome::Lost { .. }) {
            self.fold_wall.observe(measured.wall_ms as f64 / 1000.0);
            self.fold_cpu.observe(measured.cpu_ms as f64 / 1000.0);
            self.fold_peak_memory.observe(measured.peak_memory as f64);
        }
    }

    /// One matching cycle of the master loop.
    pub fn cycle(&self, took: Duration, placed: usize) {
        self.cycle_seconds.observe(took.as_secs_f64());
        self.cycle_decisions.observe(placed as f64);
    }

    /// One store operation (`kind`: write, read, fsync).
    pub fn store_op(&self, kind: &'static str, op: &'static str, took: Duration) {
        self.store_ops
            .get_or_create(&StoreLabels { kind, op })
            .observe(took.as_secs_f64());
    }

    fn http(&self, method: &Method, route: &str, status: StatusCode, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method_label(method),
                route: route.to_string(),
                status: status.as_u16(),
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Reads what is now (folds per queue and state, runners) and encodes every metric.
    async fn render(&self, state: &ApiState) -> Result<String, ApiError> {
        let _one = self.scrape.lock().await;
        let runners = state.master.runners();
        let named = runners
            .iter()
            .flat_map(|r| r.queues.iter().filter(|q| *q != "*").cloned())
            .collect();
        let counts = bounded_queues(state.store.fold_state_counts().await?, &named);
        self.folds.clear();
        // Every state of each queue the counts name, zeros included: a series does not
        // vanish when its last fold leaves the state.
        for (queue, _, _) in &counts {
            for s in FoldState::ALL {
                self.folds
                    .get_or_create(&QueueState {
                        queue: queue.clone(),
                        state: s.as_str(),
                    })
                    .set(0);
            }
        }
        for (queue, fold_state, n) in counts {
            self.folds
                .get_or_create(&QueueState {
                    queue,
                    state: fold_state.as_str(),
                })
                .set(n);
        }
        self.slots_total.clear();
        self.slots_used.clear();
        self.runner_state.clear();
        for r in runners {
            let runner = RunnerLabel { runner: r.name };
            self.slots_total
                .get_or_create(&runner)
                .set(r.slots_total as i64);
            self.slots_used
                .get_or_create(&runner)
                .set(r.slots_used as i64);
            let now = runner_state(&r.state);
            for s in RUNNER_STATES {
                self.runner_state
                    .get_or_create(&RunnerStateLabels {
                        runner: runner.runner.clone(),
                        state: s,
                    })
                    .set((s == now) as i64);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(out)
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The name of the function that wrote closure type `type_name` (from
/// `std::any::type_name`): "datarun::store::folds::<impl ...Store>::assign::{{closure}}" is
/// "assign". A label value bounded by the code, found without allocating.
pub fn op_name(type_name: &'static str) -> &'static str {
    let mut s = type_name;
    while let Some(rest) = s.strip_suffix("::{{closure}}") {
        s = rest;
    }
    // Generic arguments of the function itself: "read_rows<alloc::string::String>".
    if s.ends_with('>') {
        let mut depth = 0;
        for (i, c) in s.char_indices().rev() {
            match c {
                '>' => depth += 1,
                '<' => {
                    depth -= 1;
                    if depth == 0 {
                        s = &s[..i];
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    s.rsplit("::").next().unwrap_or(s)
}

/// The method as a label: the standard ones, else "other" (a client may send any token).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The outermost API middleware (inside `json_errors`): counts every answer by method, route
/// and status, and times it to its head.
pub async fn track_http(req: Request, next: Next) -> Response {
    let t = Instant::now();
    let method = req.method().clone();
    let resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched");
    get().http(&method, route, resp.status(), t.elapsed());
    resp
}

/// A route layer: hands the matched path template on to `track_http` in the answer.
pub async fn tag_route(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(m);
    }
    resp
}

/// `GET /metrics`, merged beside `/api/v1`.
pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .route_layer(axum::middleware::from_fn(tag_route))
        .with_state(state)
}

async fn scrape(State(state): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    if !state.limits.metrics_public {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let Some(token) = token else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing token: /metrics takes an admin token (`Authorization: Bearer TOKEN`), or serve it without one with `serve --metrics-public`",
            ));
        };
        match crate::api::principal(&state, token).await? {
            Ok(who) if who.admin => {}
            Ok(who) => {
                return Err(ApiError::forbidden(format!(
                "{} is not an admin; /metrics is for admin tokens (or `serve --metrics-public`)",
                who.name
            )))
            }
            Err(refused) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, refused.message)),
        }
    }
    let body = get().render(&state).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_beyond_the_bound_are_summed_as_other() {
        let mut counts = vec![("named".to_string(), FoldState::Idle, 1)];
        for i in 0..100 {
            counts.push((format!("q{i:03}"), FoldState::Held, 100 - i));
            counts.push((format!("q{i:03}"), FoldState::Done, 1));
        }
        let total: i64 = counts.iter().map(|c| c.2).sum();
        let named = ["named".to_string()].into_iter().collect();
        let out = bounded_queues(counts.clone(), &named);
        let queues: std::collections::BTreeSet<&str> = out.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(queues.len(), QUEUE_SERIES);
        // The inventory's queue first however small, then the fullest: q000..q061.
        assert!(queues.contains("named") && queues.contains("q061") && !queues.contains("q062"));
        assert_eq!(out.iter().map(|c| c.2).sum::<i64>(), total);
        let other = |state: FoldState| {
            out.iter()
                .find(|c| c.0 == OTHER_QUEUES && c.1 == state)
                .map(|c| c.2)
        };
        assert_eq!(other(FoldState::Done), Some(38));
        assert_eq!(other(FoldState::Held), Some((1..=38).sum()));
        // At the bound, nothing changes.
        let few: Vec<_> = counts.into_iter().take(QUEUE_SERIES).collect();
        assert_eq!(bounded_queues(few.clone(), &named), few);
    }

    #[test]
    fn op_names_are_the_method_that_sent_the_job() {
        assert_eq!(
            op_name("datarun::store::folds::<impl datarun::store::Store>::assign::{{closure}}::{{closure}}"),
            "assign"
        );
        assert_eq!(
            op_name("datarun::store::events::page<alloc::vec::Vec<u8>>::{{closure}}"),
            "page"
        );
        assert_eq!(op_name("plain"), "plain");
    }

    #[test]
    fn runner_states_are_bounded() {
        assert_eq!(runner_state("ready"), "ready");
        assert_eq!(runner_state("connecting"), "connecting");
        assert_eq!(runner_state("not connected: refused"), "disconnected");
        assert_eq!(
            runner_state("drained (`datarun runners resume a` to resume)"),
            "drained"
        );
        assert_eq!(
            runner_state("removed from the inventory: draining"),
            "removed"
        );
        assert!(RUNNER_STATES.contains(&runner_state("anything")));
    }
}
