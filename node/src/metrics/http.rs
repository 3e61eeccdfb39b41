//! API requests by route: an axum middleware layered over the public router, so the route is
//! the matched template (`/orchestrator/v1/jobs/{id}`), never the raw path — the label set
//! stays as small as the route table whatever clients send.
//!
//! Per request: a clone of the matched path (an `Arc`, no allocation), one read lock on each
//! family's map (a write lock only the first time a route/method/status is seen), and
//! relaxed atomic adds. The latency histogram is porch-raft's atomic one, not
//! prometheus-client's, which takes a mutex per observation.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use porch_raft::latency_histogram::LatencyHistogram;
use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

/// Label value of requests no route matched (404s of the fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Timing>,
}

impl HttpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "porch_http_requests",
            "API requests answered, by route template, method and status.",
            self.requests.clone(),
        );
        registry.register(
            "porch_http_request_duration_seconds",
            "API request latency to the response's head, by route template and method.",
            self.duration.clone(),
        );
    }

    fn observe(&self, route: Route, method: &'static str, status: u16, started: Instant) {
        let elapsed = started.elapsed();
        self.duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .0
            .observe(elapsed);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }
}

/// The middleware: time the request, count it under its route template.
pub async fn observe(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = Route(request.extensions().get::<MatchedPath>().cloned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    metrics.observe(route, method, response.status().as_u16(), started);
    response
}

/// Methods outside the standard set share one label value: a client cannot grow the label set.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The matched route template, compared by its text.
#[derive(Clone, Debug)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RouteLabels {
    route: Route,
    method: &'static str,
}

impl EncodeLabelSet for RouteLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        ("route", self.route.as_str()).encode(encoder.encode_label())?;
        ("method", self.method).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RequestLabels {
    route: Route,
    method: &'static str,
    status: u16,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        ("route", self.route.as_str()).encode(encoder.encode_label())?;
        ("method", self.method).encode(encoder.encode_label())?;
        ("status", self.status).encode(encoder.encode_label())
    }
}

/// [`LatencyHistogram`] as a prometheus-client metric.
#[derive(Debug, Default)]
struct Timing(LatencyHistogram);

impl TypedMetric for Timing {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Timing {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let reading = self.0.read();
        encoder.encode_histogram::<NoLabelSet>(
            reading.sum_seconds,
            reading.count,
            &reading.buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_no_route_matched_share_one_label_and_odd_methods_another() {
        let metrics = HttpMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        for _ in 0..2 {
            metrics.observe(Route(None), "GET", 404, Instant::now());
        }
        metrics.observe(
            Route(None),
            method_label(&axum::http::Method::from_bytes(b"BREW").unwrap()),
            404,
            Instant::now(),
        );
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "porch_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 2",
            "porch_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1",
            "porch_http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line '{line}' in:\n{text}"
            );
        }
    }
}
