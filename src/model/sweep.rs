//! Parameter sweeps (`submit --sweep params.toml`): a grid and/or seeded random samples over
//! named parameters, one point per fold of an array. The same document comes as TOML from the
//! command line (errors name `file:line: key`) or as JSON in `POST /sweeps` (errors name the
//! key); both are checked here, by one validator over JSON.
//!
//! ```toml
//! cap = 4                       # at most 4 points in line or running at once
//! [grid]
//! lr = [0.1, 0.01]
//! depth = [2, 4, 8]
//! [random]                      # n samples per grid point, drawn from `seed`
//! n = 20
//! seed = 7
//! x = { uniform = [-5, 5] }
//! y = { log_uniform = [1e-4, 1] }
//! k = { choice = ["a", "b"] }
//! [stop]                        # a done point reaching this removes the points not started
//! metric = "loss"
//! below = 0.01                  # or above = ...
//! ```

mod toml_doc;
pub use toml_doc::from_toml;

use super::limits::{MAX_PARAM_VALUE, MAX_SWEEP_PARAMS, MAX_SWEEP_POINTS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The prefix of a parameter's variable in the fold's environment (`DATARUN_PARAM_LR`).
pub const PARAM_ENV_PREFIX: &str = "DATARUN_PARAM_";
/// The input every point's fold gets: its parameters as a JSON object.
pub const PARAMS_INPUT: &str = "params.json";
/// The output a point's fold may write: a flat JSON object of numbers.
pub const METRICS_OUTPUT: &str = "metrics.json";
/// The most of `metrics.json` that is read (a larger one counts as no metrics).
pub const MAX_METRICS_JSON: usize = 64 << 10;

const TOP_KEYS: &[&str] = &["grid", "random", "stop", "cap"];

/// A checked sweep: its parameter names, its points (each a value per name) and rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub names: Vec<String>,
    pub points: Vec<Map<String, Value>>,
    pub stop: Option<StopRule>,
    pub cap: Option<u32>,
}

/// Early stop: when a done point's metric goes below (or above) the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
}

impl StopRule {
    /// Whether these metrics reach the target.
    pub fn reached(&self, metrics: &BTreeMap<String, f64>) -> Option<f64> {
        let v = *metrics.get(&self.metric)?;
        let hit = self.below.is_some_and(|b| v < b) || self.above.is_some_and(|a| v > a);
        hit.then_some(v)
    }

    /// `loss below 0.01`.
    pub fn describe(&self) -> String {
        match (self.below, self.above) {
            (Some(b), _) => format!("{} below {b}", self.metric),
            (_, Some(a)) => format!("{} above {a}", self.metric),
            _ => self.metric.clone(),
        }
    }
}

/// What is wrong, and under which key (`grid.lr`, `random.x.uniform`).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for SweepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "sweep: {}", self.message)
        } else {
            write!(f, "sweep: {}: {}", self.key, self.message)
        }
    }
}

fn err<T>(key: &str, message: impl Into<String>) -> Result<T, SweepError> {
    Err(SweepError {
        key: key.to_string(),
        message: message.into(),
    })
}

/// A parameter name: as an environment variable's, at most 64 bytes.
pub fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value as the fold's environment has it: strings as they are, numbers and booleans as JSON
/// writes them.
pub fn env_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The variable of parameter `name`.
pub fn env_name(name: &str) -> String {
    format!("{PARAM_ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// A fold spec for one point: its values as variables and `params.json` (blob `params_sha`)
/// among its inputs.
pub fn point_spec(
    spec: &super::FoldSpec,
    point: &Map<String, Value>,
    params_sha: String,
) -> super::FoldSpec {
    let mut s = spec.clone();
    for (name, value) in point {
        s.env.insert(env_name(name), env_value(value));
    }
    s.inputs.push(super::InputRef {
        name: PARAMS_INPUT.to_string(),
        sha256: params_sha,
    });
    s
}

/// A random parameter's distribution.
#[derive(Clone, Debug, PartialEq)]
enum Dist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    Choice(Vec<Value>),
}

/// splitmix64: small, and the same samples from the same seed forever (the values are stored
/// with the points anyway).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Dist {
    fn sample(&self, rng: &mut Rng) -> Value {
        match self {
            Dist::Uniform(lo, hi) => json_f64(lo + (hi - lo) * rng.unit()),
            Dist::LogUniform(lo, hi) => {
                let (a, b) = (lo.ln(), hi.ln());
                json_f64((a + (b - a) * rng.unit()).exp())
            }
            Dist::Choice(values) => values[(rng.next() % values.len() as u64) as usize].clone(),
        }
    }
}

fn json_f64(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn check_name(
    key: &str,
    name: &str,
    seen: &mut BTreeMap<String, String>,
) -> Result<(), SweepError> {
    if !valid_param_name(name) {
        return err(
            key,
            format!("{name:?} is not a parameter name (a letter or '_', then letters, digits, '_'; at most 64)"),
        );
    }
    if let Some(other) = seen.insert(name.to_ascii_uppercase(), name.to_string()) {
        return err(
            key,
            format!(
                "{name:?} and {other:?} name the same variable {}",
                env_name(name)
            ),
        );
    }
    if seen.len() > MAX_SWEEP_PARAMS {
        return err(key, format!("more than {MAX_SWEEP_PARAMS} parameters"));
    }
    Ok(())
}

fn check_scalar(key: &str, v: &Value) -> Result<(), SweepError> {
    match v {
        Value::Number(_) | Value::Bool(_) => Ok(()),
        Value::String(s) if s.len() <= MAX_PARAM_VALUE && !s.contains('\0') => Ok(()),
        Value::String(s) if s.contains('\0') => err(key, "a value may not contain NUL"),
        Value::String(s) => err(
            key,
            format!(
                "a value of {} bytes is over the limit of {MAX_PARAM_VALUE}",
                s.len()
            ),
        ),
        other => err(
            key,
            format!(
                "expected a number, string or boolean, found {}",
                kind(other)
            ),
        ),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn number(key: &str, v: &Value) -> Result<f64, SweepError> {
    v.as_f64().filter(|f| f.is_finite()).map_or_else(
        || err(key, format!("expected a number, found {}", kind(v))),
        Ok,
    )
}

fn table<'a>(key: &str, v: &'a Value, example: &str) -> Result<&'a Map<String, Value>, SweepError> {
    v.as_object().map_or_else(
        || {
            err(
                key,
                format!("expected a table such as {example}, found {}", kind(v)),
            )
        },
        Ok,
    )
}

fn parse_dist(key: &str, v: &Value) -> Result<Dist, SweepError> {
    let example = "{ uniform = [-5, 5] }, { log_uniform = [1e-4, 1] } or { choice = [..] }";
    let t = table(key, v, example)?;
    let (Some((how, args)), 1) = (t.iter().next(), t.len()) else {
        return err(key, format!("give one distribution: {example}"));
    };
    let key = format!("{key}.{how}");
    let Some(args) = args.as_array() else {
        return err(&key, format!("expected an array, found {}", kind(args)));
    };
    let range = |log: bool| -> Result<(f64, f64), SweepError> {
        let [lo, hi] = args.as_slice() else {
            return err(&key, "expected [low, high]");
        };
        let (lo, hi) = (number(&key, lo)?, number(&key, hi)?);
        if lo >= hi {
            return err(&key, format!("low {lo} is not below high {hi}"));
        }
        if log && lo <= 0.0 {
            return err(&key, format!("low {lo} must be above 0 (a log scale)"));
        }
        Ok((lo, hi))
    };
    match how.as_str() {
        "uniform" => range(false).map(|(a, b)| Dist::Uniform(a, b)),
        "log_uniform" => range(true).map(|(a, b)| Dist::LogUniform(a, b)),
        "choice" => {
            if args.is_empty() {
                return err(&key, "give at least one value");
            }
            for (i, a) in args.iter().enumerate() {
                check_scalar(&format!("{key}[{i}]"), a)?;
            }
            Ok(Dist::Choice(args.clone()))
        }
        other => err(
            &key,
            format!("unknown distribution {other:?}; give {example}"),
        ),
    }
}

fn positive(key: &str, v: &Value, max: u64) -> Result<u64, SweepError> {
    match v.as_u64() {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        _ => err(
            key,
            format!("expected a whole number from 1 to {max}, found {v}"),
        ),
    }
}

/// Checks a sweep document (as JSON) and draws its points.
pub fn from_json(doc: &Value) -> Result<Sweep, SweepError> {
    let top = table("", doc, "{\"grid\": {\"lr\": [0.1, 0.01]}}")?;
    for key in top.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            return err(
                key,
                format!("unknown key; a sweep takes {}", TOP_KEYS.join(", ")),
            );
        }
    }
    let mut seen = BTreeMap::new();
    let mut names = Vec::new();
    let mut grid: Vec<(String, Vec<Value>)> = Vec::new();
    let mut size: u64 = 1;
    if let Some(g) = top.get("grid") {
        for (name, values) in table("grid", g, "[grid] with lr = [0.1, 0.01]")? {
            let key = format!("grid.{name}");
            check_name(&key, name, &mut seen)?;
            let Some(values) = values.as_array().filter(|v| !v.is_empty()) else {
                return err(
                    &key,
                    "expected a non-empty array of values, e.g. [0.1, 0.01]",
                );
            };
            for (i, v) in values.iter().enumerate() {
                check_scalar(&format!("{key}[{i}]"), v)?;
            }
            size = size.saturating_mul(values.len() as u64);
            if size > MAX_SWEEP_POINTS as u64 {
                return err(
                    &key,
                    format!("the grid has more than {MAX_SWEEP_POINTS} points"),
                );
            }
            names.push(name.clone());
            grid.push((name.clone(), values.clone()));
        }
    }
    let mut random: Vec<(String, Dist)> = Vec::new();
    let (mut n, mut seed) = (1u64, 0u64);
    if let Some(r) = top.get("random") {
        let r = table(
            "random",
            r,
            "[random] with n = 20, seed = 7, x = { uniform = [-5, 5] }",
        )?;
        n = positive(
            "random.n",
            r.get("n").unwrap_or(&Value::Null),
            MAX_SWEEP_POINTS as u64,
        )?;
        seed = match r.get("seed") {
            Some(s) => s.as_u64().map_or_else(
                || {
                    err(
                        "random.seed",
                        format!("expected a whole number (0 or more), found {s}"),
                    )
                },
                Ok,
            )?,
            None => {
                return err(
                    "random.seed",
                    "give a seed, so that the samples can be drawn again",
                )
            }
        };
        for (name, d) in r {
            if name == "n" || name == "seed" {
                continue;
            }
            let key = format!("random.{name}");
            check_name(&key, name, &mut seen)?;
            random.push((name.clone(), parse_dist(&key, d)?));
            names.push(name.clone());
        }
        if random.is_empty() {
            return err(
                "random",
                "give at least one parameter, e.g. x = { uniform = [-5, 5] }",
            );
        }
    }
    if names.is_empty() {
        return err("", "give parameters in [grid] and/or [random]");
    }
    let total = size.saturating_mul(n);
    if total > MAX_SWEEP_POINTS as u64 {
        return err(
            if random.is_empty() {
                "grid"
            } else {
                "random.n"
            },
            format!("{total} points is over the limit of {MAX_SWEEP_POINTS}"),
        );
    }
    let stop = match top.get("stop") {
        None => None,
        Some(s) => {
            let t = table("stop", s, "[stop] with metric = \"loss\", below = 0.01")?;
            for k in t.keys() {
                if !["metric", "below", "above"].contains(&k.as_str()) {
                    return err(
                        &format!("stop.{k}"),
                        "unknown key; [stop] takes metric, below, above",
                    );
                }
            }
            let metric = match t.get("metric").and_then(Value::as_str) {
                Some(m) if !m.is_empty() && m.len() <= 256 => m.to_string(),
                _ => {
                    return err(
                        "stop.metric",
                        "give the metric's name (a string, at most 256 bytes)",
                    )
                }
            };
            let below = t
                .get("below")
                .map(|v| number("stop.below", v))
                .transpose()?;
            let above = t
                .get("above")
                .map(|v| number("stop.above", v))
                .transpose()?;
            if below.is_some() == above.is_some() {
                return err("stop", "give one of below or above");
            }
            Some(StopRule {
                metric,
                below,
                above,
            })
        }
    };
    let cap = top
        .get("cap")
        .map(|c| positive("cap", c, u64::from(u32::MAX)).map(|c| c as u32))
        .transpose()?;
    let mut rng = Rng(seed);
    let mut points = Vec::with_capacity(total as usize);
    for i in 0..size {
        // The last grid parameter varies fastest.
        let mut base = Map::new();
        let mut rest = i;
        for (name, values) in grid.iter().rev() {
            let len = values.len() as u64;
            base.insert(name.clone(), values[(rest % len) as usize].clone());
            rest /= len;
        }
        for _ in 0..n {
            let mut point = base.clone();
            for (name, dist) in &random {
                point.insert(name.clone(), dist.sample(&mut rng));
            }
            points.push(point);
        }
    }
    Ok(Sweep {
        names,
        points,
        stop,
        cap,
    })
}

/// A fold's `metrics.json`: the numbers of a flat JSON object (other values are left out);
/// None when it is not a JSON object or is over `MAX_METRICS_JSON`.
pub fn parse_metrics(data: &[u8]) -> Option<BTreeMap<String, f64>> {
    if data.len() > MAX_METRICS_JSON {
        return None;
    }
    let v: Map<String, Value> = serde_json::from_slice(data).ok()?;
    Some(
        v.into_iter()
            .filter_map(|(k, v)| Some((k, v.as_f64()?)))
            .collect(),
    )
}

/// The order of points by `metric` (`max`: highest first, else lowest first): positions in
/// `metrics`, those without the metric last, in their order.
pub fn rank(metrics: &[Option<&BTreeMap<String, f64>>], metric: &str, max: bool) -> Vec<usize> {
    let mut with: Vec<(f64, usize)> = Vec::new();
    let mut without = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        match m.and_then(|m| m.get(metric)).filter(|v| !v.is_nan()) {
            Some(v) => with.push((*v, i)),
            None => without.push(i),
        }
    }
    with.sort_by(|a, b| {
        let o = a.0.total_cmp(&b.0);
        (if max { o.reverse() } else { o }).then(a.1.cmp(&b.1))
    });
    with.into_iter().map(|(_, i)| i).chain(without).collect()
}

#[cfg(test)]
mod tests;
