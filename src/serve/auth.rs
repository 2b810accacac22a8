//! Who may see the dashboard: the `--token-file` token as `Authorization: Bearer`, or the
//! login form's cookie (HttpOnly, SameSite=Strict; its value is derived from the token,
//! so the token itself never sits in a browser). Comparisons take constant time. Without
//! a token the pages are served on a loopback listener only.

use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{pages, App};

/// Name of the session cookie.
const COOKIE: &str = "opsctl_session";

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get_all(header::AUTHORIZATION).iter().find_map(|v| {
        let (scheme, token) = v.to_str().ok()?.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    })
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cookie value a login with `token` sets.
fn session_value(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"opsctl serve session v1\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// The session cookie of a request, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then_some(v)
        })
}

/// Whether the request may see the pages; `Err` with the answer otherwise.
fn allowed(app: &App, headers: &HeaderMap) -> Result<(), Denied> {
    let Some(token) = &app.cfg.token else {
        return if app.loopback {
            Ok(())
        } else {
            Err(Denied::NoToken)
        };
    };
    if let Some(p) = bearer(headers) {
        return if same_secret(token.as_bytes(), p.as_bytes()) {
            Ok(())
        } else {
            Err(Denied::Wrong)
        };
    }
    match session_cookie(headers) {
        Some(c) if same_secret(session_value(token).as_bytes(), c.as_bytes()) => Ok(()),
        _ => Err(Denied::Missing),
    }
}

enum Denied {
    /// No token configured and the listener is not on loopback.
    NoToken,
    /// A bearer token that is not the one.
    Wrong,
    /// Neither a bearer token nor a valid session cookie.
    Missing,
}

/// Middleware in front of every page and `/api/` route.
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    match allowed(&app, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(Denied::NoToken) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain")],
            "the dashboard is served without a token only on a loopback address: \
             start opsctl serve with --token-file\n",
        )
            .into_response(),
        Err(d) => {
            let path = req.uri().path().to_string();
            if path.starts_with("/api/") || matches!(d, Denied::Wrong) {
                (
                    StatusCode::UNAUTHORIZED,
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::WWW_AUTHENTICATE, "Bearer"),
                    ],
                    r#"{"error":"a bearer token or a login is needed"}"#,
                )
                    .into_response()
            } else {
                let mut r = pages::login_page(None, &path).into_response();
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                r
            }
        }
    }
}

#[derive(serde::Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// A relative path on this server (never `//host` or a scheme), else `/`.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

pub async fn login_form(Query(q): Query<NextQuery>) -> Response {
    pages::login_page(None, safe_next(&q.next)).into_response()
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

pub async fn login(State(app): State<App>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(&f.next);
    let Some(token) = &app.cfg.token else {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain")],
            "no token is configured (opsctl serve --token-file)\n",
        )
            .into_response();
    };
    if !same_secret(token.as_bytes(), f.token.trim().as_bytes()) {
        let mut r = pages::login_page(Some("wrong token"), next).into_response();
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
        session_value(token)
    );
    let mut r = (StatusCode::SEE_OTHER, "").into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(next) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    r
}

pub async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login"),
            (
                header::SET_COOKIE,
                "opsctl_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        ],
        "",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bearer_tokens_and_cookies() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret ".parse().unwrap());
        assert_eq!(bearer(&h), Some("s3cret"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic x".parse().unwrap());
        assert_eq!(bearer(&h), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=b; opsctl_session=xyz".parse().unwrap());
        assert_eq!(session_cookie(&h), Some("xyz"));
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next("/backups"), "/backups");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("/\\evil"), "/");
    }
}
