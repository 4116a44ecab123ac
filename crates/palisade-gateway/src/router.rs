//! Which handler serves which path, and the layers every request passes
//! (request id, panic guard, body deadline).
//!
//! The router only binds paths to handlers; it must not decide anything.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::middleware;
use axum::routing::{get, patch, post};
use axum::Router;
use palisade_openai::request::Endpoint;

use crate::http::request_id::RequestId;
use crate::state::GatewayState;

pub(crate) fn router(state: Arc<GatewayState>) -> Router {
    // One handler serves every proxied endpoint; the route binds which.
    let proxied = |endpoint: Endpoint| {
        move |state: State<Arc<GatewayState>>,
              id: Extension<RequestId>,
              peer: Option<Extension<crate::http::listener::PeerAddr>>,
              headers: http::HeaderMap,
              body: axum::body::Body| {
            let peer = peer.map(|Extension(p)| p.0.ip());
            crate::pipeline::handle(state, id, peer, headers, body, endpoint)
        }
    };
    Router::new()
        .route(
            "/v1/chat/completions",
            post(proxied(Endpoint::ChatCompletions)),
        )
        .route("/v1/completions", post(proxied(Endpoint::Completions)))
        .route("/v1/embeddings", post(proxied(Endpoint::Embeddings)))
        .route("/v1/responses", post(proxied(Endpoint::Responses)))
        .route(
            "/v1/responses/{id}",
            get(crate::api::responses::retrieve).delete(crate::api::responses::delete),
        )
        .route(
            "/v1/responses/{id}/cancel",
            post(crate::api::responses::cancel),
        )
        .route("/v1/models", get(crate::api::models::list))
        .route("/v1/models/{*id}", get(crate::api::models::retrieve))
        .route("/v1/guard/scan", post(crate::api::guard::scan))
        .route("/v1/guard/tool_calls", post(crate::api::tools::guard))
        .route("/v1/tools/confirm", post(crate::api::tools::confirm))
        .route("/v1/tools/pending", get(crate::api::tools::pending))
        .route("/v1/tools/verify", post(crate::api::tools::verify))
        .route("/v1/tools/public-key", get(crate::api::tools::public_key))
        .route("/v1/watermark/detect", post(crate::api::watermark::detect))
        .route("/admin/usage", get(crate::api::admin::usage))
        .route(
            "/admin/keys",
            get(crate::api::keys::list).post(crate::api::keys::create),
        )
        .route(
            "/admin/keys/{id}",
            patch(crate::api::keys::update).post(crate::api::keys::update),
        )
        .route("/admin/keys/{id}/rotate", post(crate::api::keys::rotate))
        .route("/admin/keys/{id}/revoke", post(crate::api::keys::revoke))
        .route("/admin/quotas", get(crate::api::admin::quotas))
        .route("/admin/policy", get(crate::api::admin::policy))
        .route("/admin/fleet", get(crate::api::admin::fleet))
        .route("/admin/audit", get(crate::api::admin_read::audit))
        .route("/admin/limits", get(crate::api::admin_read::limits))
        .route("/admin/routes", get(crate::api::admin_views::routes))
        .route("/admin/canaries", get(crate::canary::admin::list))
        .route("/admin/policy/shadow", get(crate::api::admin_views::shadow))
        .route("/admin/config", get(crate::api::admin_read::config))
        .route(
            "/admin/config/reload",
            post(crate::api::admin_read::config_reload),
        )
        .route(
            "/admin/policy/diff",
            get(crate::api::admin_read::policy_diff),
        )
        .route("/admin/ui", get(crate::console::root))
        .route("/admin/ui/", get(crate::console::page))
        .route("/admin/ui/app.js", get(crate::console::page))
        .route("/admin/ui/app.css", get(crate::console::page))
        .route("/admin/ui/login", post(crate::console::login))
        .route("/admin/ui/logout", post(crate::console::logout))
        .route("/admin/ui/session", get(crate::console::session))
        .route(
            "/admin/policy/rollback",
            post(crate::api::admin::policy_rollback),
        )
        .route(
            "/admin/scaling-events",
            post(crate::anomaly::admin::scaling_event),
        )
        .route("/admin/anomaly", get(crate::anomaly::admin::status))
        .route("/admin/hunt", get(crate::extraction::admin::list))
        .route("/admin/hunt/{id}", post(crate::extraction::admin::mark))
        .route("/healthz", get(crate::api::probes::healthz))
        .route("/readyz", get(crate::api::probes::readyz))
        .route("/metrics", get(crate::api::probes::metrics))
        .fallback(crate::api::probes::not_found)
        .method_not_allowed_fallback(crate::api::probes::method_not_allowed)
        // Console sessions become their key's Authorization (CSRF-checked);
        // security headers on every /admin answer.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::console::layer,
        ))
        .layer(middleware::from_fn_with_state(
            crate::http::body_deadline::BodyReadTimeout(state.body_read_timeout),
            crate::http::body_deadline::layer,
        ))
        // No traffic before policy: refuses /v1/* until a verified policy is active.
        .layer(middleware::from_fn_with_state(
            state.gates.policy.clone(),
            crate::bundle::gate::layer,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            crate::api::probes::on_panic,
        ))
        .layer(middleware::from_fn(crate::http::request_id::layer))
        .with_state(state)
}
