//! Phase 1, identify: every request gets an id, and every log line of the
//! request carries it.
//!
//! A client-supplied `x-request-id` is kept when it is short, printable ASCII
//! (so it cannot inject into logs or headers); otherwise a UUIDv4 is minted.
//! The id is returned on every response, errors included.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument;

/// The header name, lower-case as HTTP/2 requires.
pub const HEADER: &str = "x-request-id";
/// Longest client-supplied id we keep; longer ones are replaced.
const MAX_LEN: usize = 128;

/// The id of the request being served, stored in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn accept(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b));
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Axum middleware: assigns the id, opens the request span, stamps the response.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_safe_ids_and_rejects_others() {
        let check = |raw: &str, kept: bool| {
            let v = HeaderValue::from_str(raw).unwrap();
            assert_eq!(accept(&v).is_some(), kept, "{raw:?}");
        };
        check("abc-123_x.y", true);
        check("req:2024/01+a=b@c", true);
        check("", false);
        check("has space", false);
        check("quote\"", false);
        check(&"a".repeat(MAX_LEN), true);
        check(&"a".repeat(MAX_LEN + 1), false);
    }
}
