//! What a node tells its operators: the Prometheus endpoint (`GET /metrics`) and the
//! readings the PE status API (`crate::api::status`) is built from.
//!
//! - [`reading`]: [`NodeReading`], one read of raft's metrics, this node's last leader
//!   contact and the applied state's counts — the facts both endpoints render.
//! - [`exposition`]: the scrape-time collector: gauges from a reading, and the storage
//!   layer's atomic histograms (append to durable, fsync, snapshot builds).
//! - [`http`]: the API middleware counting requests by route template, method and status,
//!   with a latency histogram per route.
//!
//! Cost on the write path: atomics only. Raft, job and agent gauges are computed when
//! scraped, never on the path of a request; a request pays one read lock on the route's
//! counter family and a few relaxed atomic adds.
//!
//! Access (`GET /metrics`): a client certificate issued by the Puppet CA (verified and
//! checked against the CRL by the TLS listener — the usual way for a Prometheus server in a
//! Puppet estate: `tls_config` with a certificate from `puppetserver ca generate`), or an
//! RBAC token with the view permission, in `X-Authentication` or `Authorization: Bearer`.

pub mod exposition;
pub mod http;
pub mod reading;

pub use reading::{NodeReading, Sources};

use crate::access::principal::{require_token, require_view};
use crate::api::ApiState;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use porch_tls::PeerInfo;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The metrics one node exposes.
pub struct NodeMetrics {
    registry: Registry,
}

impl NodeMetrics {
    pub fn new(sources: Arc<Sources>, http: &http::HttpMetrics) -> NodeMetrics {
        let mut registry = Registry::default();
        http.register(&mut registry);
        registry.register_collector(Box::new(exposition::NodeCollector::new(sources)));
        NodeMetrics { registry }
    }

    /// The exposition, in OpenMetrics when the scraper asks for it, else Prometheus's text
    /// format 0.0.4 (what every scraper reads).
    pub fn render(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        }
        Ok(text)
    }
}

/// `GET /metrics`, behind [`require_certificate_or_token`] and [`require_certificate_or_view`].
pub fn router(metrics: Arc<NodeMetrics>, api: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(scrape).with_state(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            require_certificate_or_view,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            api,
            require_certificate_or_token,
        ))
}

async fn scrape(State(metrics): State<Arc<NodeMetrics>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    match metrics.render(openmetrics) {
        Ok(text) => {
            let content_type = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, content_type)], text).into_response()
        }
        Err(_) => {
            crate::api::error::ApiError::internal("cannot encode the metrics").into_response()
        }
    }
}

/// Whether the connection presented a client certificate the TLS listener verified against
/// the Puppet CA and its CRL.
fn has_verified_certificate(request: &Request) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .is_some_and(|ConnectInfo(peer)| peer.certname.is_some())
}

/// A verified client certificate is enough; otherwise the token (`X-Authentication`, or
/// `Authorization: Bearer` as Prometheus's `authorization` setting sends it).
async fn require_certificate_or_token(
    state: State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if has_verified_certificate(&request) {
        return next.run(request).await;
    }
    if !request.headers().contains_key("x-authentication") {
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| HeaderValue::from_str(token.trim()).ok());
        if let Some(token) = bearer {
            request.headers_mut().insert("x-authentication", token);
        }
    }
    require_token(state, request, next).await
}

async fn require_certificate_or_view(
    state: State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    if has_verified_certificate(&request) {
        return next.run(request).await;
    }
    require_view(state, request, next).await
}
