//! The admin web console at `/admin/ui`: a static page (HTML, JS, CSS
//! compiled into the binary) that drives the existing JSON admin
//! endpoints, plus login, logout and the session layer.
//!
//! A person logs in once with an admin key; the gateway keeps the key in
//! its session table and answers with an opaque `HttpOnly; SameSite=Strict`
//! cookie. [`layer`] turns a live session cookie into the key's
//! `Authorization` header, so every admin handler authenticates a browser
//! exactly as it does a script; a state-changing call must also carry the
//! session's CSRF token in `x-csrf-token`. A request that brings its own
//! `Authorization` header is left alone (no cookie, no CSRF: a cross-site
//! page cannot set that header without a CORS preflight, which we never
//! grant).
//!
//! Must not: build any HTML from data (the page renders data with
//! `textContent` only), load anything from another origin (the CSP says
//! `default-src 'self'`), or accept a session id the client chose.

mod session;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Extension, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use palisade_openai::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;
use session::{random_token, same_token, Minted, SessionTable};

/// The session cookie's name. `__Host-` would pin it to HTTPS and `/`; the
/// console may run on plain-HTTP loopback, so a plain name with `Path`.
const COOKIE: &str = "palisade_console";
/// The header carrying the CSRF token on state-changing calls.
const CSRF_HEADER: &str = "x-csrf-token";
/// Only same-origin scripts, styles, images and fetches; never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The console's state: its session table and cookie settings.
#[derive(Debug)]
pub(crate) struct Console {
    sessions: Mutex<SessionTable>,
    secure_cookie: bool,
    ttl: Duration,
}

impl Console {
    pub(crate) fn from_config(config: &palisade_config::ConsoleConfig) -> Self {
        let ttl = Duration::from_secs(config.session_ttl_secs);
        Self {
            sessions: Mutex::new(SessionTable::new(ttl, config.max_sessions)),
            secure_cookie: config.secure_cookie,
            ttl,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, SessionTable> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cookie(&self, value: &str, max_age: u64) -> Option<HeaderValue> {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        ))
        .ok()
    }
}

/// The session id in the request's `Cookie` header, if any.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// Paths a console session may reach: the admin API and the approver's
/// tool endpoints. Login is excluded (it mints the session).
fn session_scope(path: &str) -> bool {
    (path.starts_with("/admin/") && path != "/admin/ui/login")
        || path == "/v1/tools/pending"
        || path == "/v1/tools/confirm"
}

/// Middleware: security headers on every `/admin` response, and a live
/// session cookie turned into its key's `Authorization` header (with the
/// CSRF check on state-changing methods).
pub(crate) async fn layer(
    State(state): State<Arc<GatewayState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let admin = path == "/admin" || path.starts_with("/admin/");
    if let Some(console) = &state.console {
        if session_scope(&path) && !req.headers().contains_key(header::AUTHORIZATION) {
            let session =
                session_id(req.headers()).and_then(|id| console.table().get(id, Instant::now()));
            if let Some(session) = session {
                let safe = matches!(*req.method(), Method::GET | Method::HEAD);
                let token = req
                    .headers()
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !safe && !same_token(token, &session.csrf) {
                    let id = req
                        .extensions()
                        .get::<RequestId>()
                        .map(|r| r.0.clone())
                        .unwrap_or_default();
                    let err = ApiError::new(
                        ErrorCode::CsrfTokenInvalid,
                        "a console session's state-changing call needs its x-csrf-token header",
                    );
                    return with_security_headers(error_response(&err, Some(&id)));
                }
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", session.key)) {
                    req.headers_mut().insert(header::AUTHORIZATION, v);
                }
            }
        }
    }
    let resp = next.run(req).await;
    if admin {
        with_security_headers(resp)
    } else {
        resp
    }
}

fn with_security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Admin answers carry tenants' data: never kept by a shared cache.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn disabled(request_id: &str) -> Response {
    error_response(
        &ApiError::new(ErrorCode::NotFound, "the admin console is disabled"),
        Some(request_id),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /admin/ui`: to the page, whose relative asset paths need the slash.
pub async fn root() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "/admin/ui/")],
    )
        .into_response()
}

/// `GET /admin/ui/`, `/admin/ui/app.js`, `/admin/ui/app.css`: the page.
pub async fn page(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    uri: http::Uri,
) -> Response {
    if state.console.is_none() {
        return disabled(&request_id);
    }
    match uri.path() {
        "/admin/ui/app.js" => asset("text/javascript; charset=utf-8", APP_JS),
        "/admin/ui/app.css" => asset("text/css; charset=utf-8", APP_CSS),
        _ => asset("text/html; charset=utf-8", INDEX_HTML),
    }
}

/// `POST /admin/ui/login` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    key: String,
}

/// `POST /admin/ui/login`: `{"key": "<admin key>"}` as JSON (a cross-site
/// form cannot send that content type without a preflight). Always mints a
/// new session id and ends any session the request's cookie named, so a
/// planted cookie is never promoted to a logged-in one.
pub async fn login(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(console) = &state.console else {
        return disabled(&request_id);
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let result = if json {
        crate::api::tools::parse_body::<LoginBody>(&body)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "login takes a JSON body {\"key\": \"…\"} with Content-Type: application/json",
        ))
    };
    let principal = result.and_then(|b| {
        let mut auth = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {}", b.key))
            .map_err(|_| ApiError::new(ErrorCode::InvalidApiKey, "invalid API key"))?;
        auth.insert(header::AUTHORIZATION, value);
        state.auth.authenticate_admin(&auth).map(|p| (p, b.key))
    });
    let (principal, key) = match principal {
        Ok(ok) => ok,
        Err(err) => return error_response(&err, Some(&request_id)),
    };
    let (Some(id), Some(csrf)) = (random_token(), random_token()) else {
        return error_response(
            &ApiError::new(ErrorCode::InternalError, "no randomness for a session id"),
            Some(&request_id),
        );
    };
    let mut table = console.table();
    if let Some(old) = session_id(&headers) {
        table.close(old);
    }
    table.open(
        Minted {
            id: id.clone(),
            csrf: csrf.clone(),
        },
        key,
        principal.tenant.to_string(),
        principal.key_name.to_string(),
        Instant::now(),
    );
    drop(table);
    tracing::info!(tenant = %principal.tenant, key = %principal.key_name, "console login");
    crate::api::audit_admin(
        &state,
        &request_id,
        &principal,
        "console_login",
        serde_json::Map::new(),
    );
    let mut resp = Json(serde_json::json!({
        "csrf_token": csrf,
        "tenant": &*principal.tenant,
        "key_name": &*principal.key_name,
    }))
    .into_response();
    if let Some(cookie) = console.cookie(&id, console.ttl.as_secs()) {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    resp
}

/// `GET /admin/ui/session`: the live session's CSRF token and who it is
/// (the page reads it after a reload); 401 without one.
pub async fn session(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    let Some(console) = &state.console else {
        return disabled(&request_id);
    };
    let live = session_id(&headers).and_then(|id| console.table().get(id, Instant::now()));
    match live {
        Some(s) => Json(serde_json::json!({
            "csrf_token": s.csrf, "tenant": s.tenant, "key_name": s.key_name,
        }))
        .into_response(),
        None => error_response(
            &ApiError::new(ErrorCode::MissingApiKey, "no console session: log in"),
            Some(&request_id),
        ),
    }
}

/// `POST /admin/ui/logout`: ends the session (the layer has checked its
/// CSRF token) and clears the cookie.
pub async fn logout(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    let Some(console) = &state.console else {
        return disabled(&request_id);
    };
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    if let Some(id) = session_id(&headers) {
        console.table().close(id);
    }
    let mut resp = Json(serde_json::json!({"logged_out": true})).into_response();
    if let Some(cookie) = console.cookie("", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let check = |cookie: &str, expected: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            assert_eq!(session_id(&h), expected, "{cookie}");
        };
        check("palisade_console=abc", Some("abc"));
        check("a=1; palisade_console=abc; b=2", Some("abc"));
        check("palisade_console=", None);
        check("xpalisade_console=abc", None);
        check("other=abc", None);
    }

    #[test]
    fn sessions_reach_the_admin_api_and_approvals_only() {
        for (path, inside) in [
            ("/admin/policy", true),
            ("/admin/ui/logout", true),
            ("/admin/ui/login", false),
            ("/v1/tools/pending", true),
            ("/v1/tools/confirm", true),
            ("/v1/chat/completions", false),
            ("/v1/tools/verify", false),
        ] {
            assert_eq!(session_scope(path), inside, "{path}");
        }
    }
}
