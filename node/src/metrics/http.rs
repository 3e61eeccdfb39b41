//! API requests by route: an axum middleware layered over the public router, so the route is
//! the matched template (`/orchestrator/v1/jobs/{id}`), never the raw path — the label set
//! stays as small as the route table whatever clients send.
//!
//! Per request: a clone of the matched path (an `Arc`, no allocation), one read lock on each
//! family's map (a write lock only the first time a route/method/status is seen), and
//! relaxed atomic adds. The latency histogram is porch-raft's atomic one, not
//! prometheus-client's, which takes a mutex per observation.

use axum::extract::MatchedPath;
use axum::response::Response;
use porch_raft::latency_histogram::LatencyHistogram;
use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// The layer over the public router: times each request and counts it under its route
/// template. A tower layer of its own rather than `axum::middleware::from_fn`: that clones the
/// route's boxed service and boxes two futures per request, which cost 3 % of job submissions
/// at 64 and 256 clients (BENCHMARKS.md); this adds one `Arc` clone and no allocation.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<HttpMetrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<HttpMetrics>) -> ObserveLayer {
        ObserveLayer { metrics }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for Observe<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let pending = Pending {
            metrics: self.metrics.clone(),
            route: Route(request.extensions().get::<MatchedPath>().cloned()),
            method: method_label(request.method()),
            started: Instant::now(),
        };
        ObserveFuture {
            inner: self.inner.call(request),
            pending: Some(pending),
        }
    }
}

/// What a request's count needs once its response is ready.
struct Pending {
    metrics: Arc<HttpMetrics>,
    route: Route,
    method: &'static str,
    started: Instant,
}

pin_project_lite::pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(p)) = (&result, this.pending.take()) {
            p.metrics
                .observe(p.route, p.method, response.status().as_u16(), p.started);
        }
        Poll::Ready(result)
    }
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

    #[tokio::test]
    async fn the_layer_counts_each_request_under_its_route_template_and_status() {
        use tower::ServiceExt;
        let metrics = Arc::new(HttpMetrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let router = axum::Router::new()
            .route(
                "/jobs/{id}",
                axum::routing::get(|| async { axum::http::StatusCode::ACCEPTED }),
            )
            .layer(ObserveLayer::new(metrics.clone()));
        for uri in ["/jobs/1", "/jobs/2", "/nowhere"] {
            let request = axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "porch_http_requests_total{route=\"/jobs/{id}\",method=\"GET\",status=\"202\"} 2",
            "porch_http_request_duration_seconds_count{route=\"/jobs/{id}\",method=\"GET\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line '{line}' in:\n{text}"
            );
        }
        assert!(
            !text.contains("/jobs/1") && !text.contains("/nowhere"),
            "raw paths never become labels:\n{text}"
        );
    }
}
