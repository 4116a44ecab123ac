//! `GET /v1/models` and `GET /v1/models/{id}`: what this gateway can route.
//!
//! Explicit routes and aliases are listed from config. A wildcard route
//! forwards any name, so for it the backend is asked for its own list (with a
//! short deadline; a backend that does not answer is left out, not fatal).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde::Serialize;

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// How long the listing waits for a backend's own model list.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Serialize)]
struct ModelEntry {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: String,
}

/// `GET /v1/models`
pub async fn list(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    // Behind the rate gate like every route: a listing can fan out to a
    // wildcard backend's own `/models`.
    let _front = match crate::pipeline::front::front(&state, &headers, None).await {
        Ok(front) => front,
        Err(err) => return error_response(&err, Some(&request_id)),
    };
    let routing = state.routing.load();
    let mut seen = BTreeSet::new();
    let mut data = Vec::new();
    for (name, backend) in routing.routes.listed() {
        if seen.insert(name.clone()) {
            data.push(ModelEntry {
                id: name.clone(),
                object: "model",
                created: 0,
                owned_by: routing.backends[*backend].name.clone(),
            });
        }
    }
    if let Some(wildcard) = routing.routes.wildcard() {
        let backend = &routing.backends[wildcard.backend];
        if backend.list_models {
            for id in backend_models(backend).await {
                if seen.insert(id.clone()) {
                    data.push(ModelEntry {
                        id,
                        object: "model",
                        created: 0,
                        owned_by: backend.name.clone(),
                    });
                }
            }
        }
    }
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

/// `GET /v1/models/{id}`: one model, by the same rules as the listing (an
/// id is found exactly when the listing would show it), 404
/// `model_not_found` otherwise. Ids may hold `/` (`meta-llama/Llama-3-8B`),
/// hence the catch-all path segment.
pub async fn retrieve(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let _front = match crate::pipeline::front::front(&state, &headers, None).await {
        Ok(front) => front,
        Err(err) => return error_response(&err, Some(&request_id)),
    };
    let routing = state.routing.load();
    let listed = routing
        .routes
        .listed()
        .iter()
        .find(|(name, _)| *name == id)
        .map(|(_, backend)| routing.backends[*backend].name.clone());
    let owner = match listed {
        Some(owner) => Some(owner),
        None => match routing.routes.wildcard() {
            Some(wildcard) if routing.backends[wildcard.backend].list_models => {
                let backend = &routing.backends[wildcard.backend];
                backend_models(backend)
                    .await
                    .contains(&id)
                    .then(|| backend.name.clone())
            }
            _ => None,
        },
    };
    match owner {
        Some(owned_by) => Json(ModelEntry {
            id,
            object: "model",
            created: 0,
            owned_by,
        })
        .into_response(),
        None => error_response(&crate::routing::model_not_found(&id), Some(&request_id)),
    }
}

async fn backend_models(backend: &crate::upstream::Backend) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Upstream {
        data: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
    }
    let deadline = Instant::now() + LIST_TIMEOUT;
    let fetched = async {
        let resp = backend.get("/models", deadline).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = tokio::time::timeout_at(deadline.into(), resp.bytes())
            .await
            .ok()?
            .ok()?;
        serde_json::from_slice::<Upstream>(&body).ok()
    }
    .await;
    match fetched {
        Some(list) => list.data.into_iter().map(|e| e.id).collect(),
        None => {
            tracing::warn!(backend = %backend.name, "could not list the backend's models");
            Vec::new()
        }
    }
}
