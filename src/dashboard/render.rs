//! The templates (embedded, registered once) and the helpers they format values with. Values
//! are HTML-escaped by handlebars' default escape function; nothing is rendered raw.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use handlebars::{handlebars_helper, Handlebars};
use serde_json::{json, Value};
use std::sync::LazyLock;

const TEMPLATES: [(&str, &str); 10] = [
    ("layout", include_str!("templates/layout.hbs")),
    ("login", include_str!("templates/login.hbs")),
    ("error", include_str!("templates/error.hbs")),
    ("overview", include_str!("templates/overview.hbs")),
    ("runners", include_str!("templates/runners.hbs")),
    ("folds", include_str!("templates/folds.hbs")),
    ("fold", include_str!("templates/fold.hbs")),
    ("submissions", include_str!("templates/submissions.hbs")),
    ("submission", include_str!("templates/submission.hbs")),
    ("leaderboard", include_str!("templates/leaderboard.hbs")),
];

static REGISTRY: LazyLock<Handlebars<'static>> = LazyLock::new(|| {
    let mut hb = Handlebars::new();
    hb.register_helper("time", Box::new(time_h));
    hb.register_helper("bytes", Box::new(bytes_h));
    hb.register_helper("ms", Box::new(ms_h));
    hb.register_helper("outcome", Box::new(outcome_h));
    hb.register_helper("argv", Box::new(argv_h));
    hb.register_helper("json", Box::new(json_text_h));
    hb.register_helper("join", Box::new(join_h));
    hb.register_helper("cpus", Box::new(cpus_h));
    for (name, text) in TEMPLATES {
        hb.register_template_string(name, text)
            .unwrap_or_else(|e| panic!("dashboard template {name}: {e}"));
    }
    hb
});

/// Compiles the templates now (at startup) rather than on the first page.
pub fn init() {
    LazyLock::force(&REGISTRY);
}

/// A page to render: a template, its title and data, and who is signed in.
pub struct Page {
    template: &'static str,
    data: Value,
}

impl Page {
    pub fn new(template: &'static str, title: &str) -> Page {
        Page {
            template,
            data: json!({ "title": title, "nav": template }),
        }
    }

    /// Adds `data`'s fields to the page's.
    pub fn data(mut self, data: Value) -> Page {
        if let (Some(to), Value::Object(from)) = (self.data.as_object_mut(), data) {
            to.extend(from);
        }
        self
    }

    /// Renders for `who`; `since`: the event seq the page's data was read after (its script
    /// follows the events from there).
    pub fn render(self, who: &crate::store::Principal, since: i64) -> Response {
        self.data(json!({ "me": super::me(who), "since": since }))
            .render_anonymous()
    }

    /// Renders without a signed-in user (the login and error pages).
    pub fn render_anonymous(self) -> Response {
        match REGISTRY.render(self.template, &self.data) {
            Ok(html) => {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
            }
            Err(e) => {
                tracing::error!("dashboard page {}: {e}", self.template);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "the dashboard could not render this page; see the master's log",
                )
                    .into_response()
            }
        }
    }

    /// An error as a page, with its status.
    pub fn error(status: StatusCode, message: &str) -> Response {
        let mut resp = Page::new("error", status.canonical_reason().unwrap_or("Error"))
            .data(json!({ "status": status.as_u16(), "message": message }))
            .render_anonymous();
        *resp.status_mut() = status;
        resp
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// ms since the epoch as UTC date and time.
pub fn format_time(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

pub fn format_bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return String::new();
    };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut x, mut unit) = (n as f64, 0);
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

fn format_ms(v: &Value) -> String {
    match v.as_u64() {
        None => String::new(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => {
            humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
        }
    }
}

/// An outcome (`{"kind": "exit_code", "code": 1}`) as `exit_code code=1`.
fn format_outcome(v: &Value) -> String {
    let Some(o) = v.as_object() else {
        return String::new();
    };
    let mut out = o
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    for (k, x) in o.iter().filter(|(k, _)| *k != "kind") {
        let x = x
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| x.to_string());
        out.push_str(&format!(" {k}={x}"));
    }
    out
}

handlebars_helper!(time_h: |v: Json| format_time(v));
handlebars_helper!(bytes_h: |v: Json| format_bytes(v));
handlebars_helper!(ms_h: |v: Json| format_ms(v));
handlebars_helper!(outcome_h: |v: Json| format_outcome(v));
handlebars_helper!(argv_h: |v: Json| v
    .as_array()
    .map(|a| shell_words::join(a.iter().map(|x| x.as_str().unwrap_or(""))))
    .unwrap_or_default());
handlebars_helper!(json_text_h: |v: Json| if v.is_null() { String::new() } else { v.to_string() });
handlebars_helper!(join_h: |v: Json| v
    .as_array()
    .map(|a| a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join(", "))
    .unwrap_or_default());
handlebars_helper!(cpus_h: |v: Json| v.as_f64().map(|c| format!("{c:.1}")).unwrap_or_default());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd/%C3%A9");
        assert_eq!(format_bytes(&json!(512)), "512 B");
        assert_eq!(format_bytes(&json!(16 << 20)), "16.0 MiB");
        assert_eq!(format_ms(&json!(1500)), "1.5 s");
        assert_eq!(format_time(&json!(0)), "1970-01-01 00:00:00");
        assert_eq!(
            format_outcome(&json!({"kind": "exit_code", "code": 3})),
            "exit_code code=3"
        );
        assert_eq!(format_time(&Value::Null), "");
    }

    #[test]
    fn every_template_escapes() {
        let page = Page::new("error", "<b>")
            .data(json!({"status": 400, "message": "<script>alert(1)</script>"}));
        let html = REGISTRY.render(page.template, &page.data).unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }
}
