//! `/readyz`: which routes can meet their write consistency with the backends that are up.
//!
//! A backend counts as up when its circuit is not open and its health check answers
//! within [`HEALTH_TIMEOUT`] (a store that was unreachable at start fails its health
//! check until it connects, before its circuit has seen enough failures to open). A
//! route is ready when enough of its voters are up for its write consistency (for
//! `primary`: its primary). `/readyz` answers 200 when every route is ready and 503 when
//! one is not, with the same JSON body either way.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mux::resilience::CircuitState;
use mux::{Backend, Mux, Role, RouteConfig, RouteTarget, WriteConsistency};
use serde::Serialize;

use crate::AppState;

/// How long a backend's health check may take before it counts as down.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Readiness {
    /// Whether every route can meet its write consistency.
    pub ready: bool,
    /// One entry per route, the default route last.
    pub routes: Vec<RouteReadiness>,
    /// One entry per backend.
    pub backends: Vec<BackendReadiness>,
}

/// Whether one route can meet its write consistency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteReadiness {
    /// The route, as errors describe it (`route "tenantconfig/" (tenant acme)`).
    pub route: String,
    /// Its prefix (empty for the default route).
    pub prefix: String,
    /// Its write consistency (`all`, `quorum`, `at_least:N`, `one`, `primary`).
    pub write: String,
    /// How many voters must apply a write.
    pub required: usize,
    /// Its voters that are up.
    pub up: Vec<String>,
    /// Its voters that are down.
    pub down: Vec<String>,
    /// Whether writes can meet the consistency now.
    pub ready: bool,
}

/// How one backend is doing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendReadiness {
    /// The backend.
    pub name: String,
    /// Its circuit state (`closed`, `half_open`, `open`).
    pub circuit: CircuitState,
    /// Whether it counts as up.
    pub up: bool,
    /// Why it is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks every backend (concurrently) and every route of `routes` on `mux`.
pub async fn readiness(mux: &Mux, routes: &[RouteConfig]) -> Readiness {
    let mut names: Vec<&str> = routes
        .iter()
        .flat_map(|r| r.backends.iter().map(|t| t.backend.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let backends: Vec<BackendReadiness> =
        futures_util::future::join_all(names.iter().map(|name| backend(mux, name))).await;
    let is_up = |name: &str| backends.iter().any(|b| b.name == name && b.up);
    let routes = routes
        .iter()
        .map(|r| {
            let voters: Vec<_> = r
                .backends
                .iter()
                .filter(|t| t.role != Role::AsyncReplica)
                .collect();
            let required = r.write.required(voters.len());
            let (up, down): (Vec<&RouteTarget>, Vec<&RouteTarget>) =
                voters.iter().copied().partition(|t| is_up(&t.backend));
            let ready = match r.write {
                WriteConsistency::Primary => up.iter().any(|t| t.role == Role::Primary),
                _ => up.len() >= required,
            };
            RouteReadiness {
                route: r.describe(),
                prefix: r.prefix.clone(),
                write: r.write.to_string(),
                required,
                up: up.iter().map(|t| t.backend.clone()).collect(),
                down: down.iter().map(|t| t.backend.clone()).collect(),
                ready,
            }
        })
        .collect::<Vec<_>>();
    Readiness {
        ready: routes.iter().all(|r| r.ready),
        routes,
        backends,
    }
}

async fn backend(mux: &Mux, name: &str) -> BackendReadiness {
    let circuit = mux.circuit(name).unwrap_or(CircuitState::Open);
    let error = match (circuit, mux.backend(name)) {
        (_, None) => Some(format!("backend \"{name}\" is not configured")),
        (CircuitState::Open, _) => Some("its circuit is open".to_owned()),
        (_, Some(b)) => match tokio::time::timeout(HEALTH_TIMEOUT, b.health()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no health answer within {HEALTH_TIMEOUT:?}")),
        },
    };
    BackendReadiness {
        name: name.to_owned(),
        circuit,
        up: error.is_none(),
        error,
    }
}

/// The `/readyz` handler: the [`Readiness`] of the configuration in force, 200 when
/// every route is ready, 503 when one is not.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Every route can meet its write consistency: a Readiness JSON body (routes with the voters up and down, backends with circuit state)", content_type = "application/json"),
    (status = 503, description = "A route cannot meet its write consistency: the same Readiness JSON body", content_type = "application/json")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let live = state.live();
    let mut routes = live.config.mux.routes.clone();
    routes.push(live.config.mux.default.clone());
    let report = readiness(&live.mux, &routes).await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}
