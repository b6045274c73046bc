//! The web dashboard the master serves at `/`: read-only, server-rendered HTML (handlebars,
//! which HTML-escapes every value) and one small embedded script and stylesheet, no Node
//! toolchain. Pages are views of the JSON API: each calls the very handler of its `/api/v1`
//! route, so a page shows what that route answers to the same token (tenancy included).
//!
//! Auth: `/ui/login` takes a token and keeps it in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` when the master serves HTTPS). The dashboard answers GET only (besides the login
//! and logout forms, which check that they come from this origin); the JSON API accepts that
//! cookie for GET requests only, never for a request that changes something, so another site
//! cannot make a browser act with it (CSRF). Every answer carries a strict CSP
//! (`default-src 'self'`: no inline script), `X-Frame-Options: DENY` and `nosniff`.

mod pages;
mod render;

use crate::api::ApiState;
use crate::store::Principal;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;

pub use render::Page;

/// The cookie that holds a dashboard session's token.
pub const COOKIE: &str = "datarun_token";

const APP_JS: &str = include_str!("static/app.js");
const APP_CSS: &str = include_str!("static/app.css");

/// The dashboard's routes, to merge beside the API (outside its JSON error layer).
pub fn router(state: ApiState) -> Router {
    render::init();
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/ui/runners", get(pages::runners))
        .route("/ui/folds", get(pages::folds))
        .route("/ui/folds/{id}", get(pages::fold))
        .route("/ui/submissions", get(pages::submissions))
        .route("/ui/submissions/{id}", get(pages::submission))
        .route("/ui/datasets/{id}/leaderboard", get(pages::leaderboard))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::api::throttle,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), session));
    Router::new()
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route(
            "/ui/static/app.js",
            get(|| static_file(APP_JS, "text/javascript")),
        )
        .route(
            "/ui/static/app.css",
            get(|| static_file(APP_CSS, "text/css")),
        )
        .route("/ui/{*rest}", get(pages::not_found))
        .merge(pages)
        .with_state(state)
        .layer(middleware::map_response(security_headers))
}

async fn static_file(text: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format!("{kind}; charset=utf-8")),
            (header::CACHE_CONTROL, "max-age=300".to_string()),
        ],
        text,
    )
        .into_response()
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The session token in a request's cookies, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Pages need a session: its principal goes in the request, else the browser goes to the login
/// page (with where it was going, and why when a token stopped working).
async fn session(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let back = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let Some(token) = cookie_token(req.headers()) else {
        return Redirect::to(&format!("/ui/login?next={}", render::encode(&back))).into_response();
    };
    match crate::api::principal(&state, &token).await {
        Ok(Ok(who)) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Ok(Err(refused)) => {
            let mut resp = login_form(StatusCode::UNAUTHORIZED, Some(&refused.message), &back);
            resp.headers_mut()
                .insert(header::SET_COOKIE, clear_cookie(&state));
            resp
        }
        Err(e) => Page::error(e.status, &e.message),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = q.ok().and_then(|Query(q)| q.next).unwrap_or_default();
    login_form(StatusCode::OK, None, &next)
}

fn login_form(status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let mut resp = Page::new("login", "Sign in")
        .data(json!({ "error": error, "next": safe_next(next) }))
        .render_anonymous();
    *resp.status_mut() = status;
    resp
}

/// Where to go after signing in: a path of this site only (never `//host` or a URL).
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if local {
        next
    } else {
        "/"
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// A form posted from another site (`Sec-Fetch-Site`, else `Origin` naming another host) is
/// refused: nobody can sign a browser in or out from elsewhere.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    !host.is_empty() && origin_host == host
}

async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return Page::error(StatusCode::FORBIDDEN, "sign in from this site's own page");
    }
    let Ok(Form(form)) = form else {
        return login_form(StatusCode::BAD_REQUEST, Some("give a token"), "/");
    };
    let token = form.token.trim();
    // A token is printable ASCII without the cookie's separators; anything else is not one.
    let plausible = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
    let who = if plausible {
        match crate::api::principal(&state, token).await {
            Ok(Ok(who)) => Ok(who),
            Ok(Err(refused)) => Err(refused.message),
            Err(e) => return Page::error(e.status, &e.message),
        }
    } else {
        Err("unknown token".to_string())
    };
    match who {
        Ok(_) => {
            let mut resp = Redirect::to(safe_next(&form.next)).into_response();
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
                secure(&state)
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(message) => login_form(StatusCode::UNAUTHORIZED, Some(&message), &form.next),
    }
}

async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return Page::error(StatusCode::FORBIDDEN, "sign out from this site's own page");
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&state));
    resp
}

fn secure(state: &ApiState) -> &'static str {
    if state.limits.https {
        "; Secure"
    } else {
        ""
    }
}

fn clear_cookie(state: &ApiState) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure(state)
    ))
    .expect("a fixed cookie")
}

/// Who is signed in, for the page header.
fn me(who: &Principal) -> serde_json::Value {
    json!({ "name": who.name, "admin": who.admin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_redirects() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; datarun_token=abc; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("datarun_token="));
        assert_eq!(cookie_token(&h), None);
        assert_eq!(safe_next("/ui/folds?after=3"), "/ui/folds?after=3");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", ""] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
    }
}
