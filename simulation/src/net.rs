//! The simulated network: every node's real router (raft RPC, cluster RPC, agent sessions),
//! with the faults a real network has.
//!
//! Two layers, because porch has two kinds of traffic:
//! - **Connections**: a connection dies (as with a TCP reset) when its server node crashes or
//!   restarts, when its client node crashed, or when a link between an agent and a node is
//!   cut. New connections to a dead node or across such a cut are refused. Agent sessions are
//!   HTTP/2 streams served by hyper over in-memory pipes (their flow control and stalls are
//!   part of what is tested); a request between nodes is handed to the peer's router in
//!   process (`porch_raft::network::PeerChannel`), its handling racing its connection's death.
//! - **Requests** between nodes (raft and cluster RPC, one gRPC request each): per request,
//!   seeded loss (the request or its reply vanishes; the caller times out), duplication
//!   (the server handles it twice), delay with jitter (which reorders concurrent requests),
//!   datacenter latency both ways, one-way link cuts (asymmetric partitions: a request across
//!   a cut never arrives; a reply across it never returns), and pauses (everything to or
//!   from a paused node is held until it resumes).
//!
//! Agent sessions are long-lived streams; they see connection faults and the latency of
//! their link when they open, not per message.

use axum::body::Body;
use porch_raft::network::{Dialer, PeerChannel};
use porch_tls::PeerInfo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tonic::transport::{Channel, Endpoint};

/// Bytes buffered in one direction of a simulated connection.
const PIPE_BYTES: usize = 256 * 1024;
/// Largest request body the duplication fault buffers (raft snapshots can be larger: those
/// are never duplicated).
const DUPLICATE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Per-request fault rates between nodes, drawn per seed.
#[derive(Clone, Debug, Default)]
pub struct MessageFaults {
    /// Probability that a request, or its reply, is lost.
    pub loss: f64,
    /// Probability that a request is handled twice.
    pub duplication: f64,
    /// Probability that a request or reply is delayed, by up to `delay_ms_max`.
    pub delay: f64,
    pub delay_ms_max: u64,
}

#[derive(Default)]
struct State {
    /// addr -> (incarnation, router) of nodes that are up.
    nodes: BTreeMap<String, (u64, axum::Router)>,
    /// Cut links, one direction each: (from, to).
    cut: BTreeSet<(String, String)>,
    /// Paused nodes.
    paused: BTreeSet<String>,
    /// Datacenter of each endpoint (node address or agent certname); absent = 0.
    datacenter: BTreeMap<String, usize>,
    /// One-way latency between datacenters, ms: `latency_ms[a][b]`.
    latency_ms: Vec<Vec<u64>>,
    faults: MessageFaults,
    rng: Option<SmallRng>,
    /// Wakes requests held by a pause or waiting for one to end.
    resumed: Option<Arc<tokio::sync::Notify>>,
    /// The HTTP/2 receive window agents advertise (`None`: the transport's default).
    agent_window_bytes: Option<u32>,
    /// Stalled agents (by certname), with the tasks waiting on their connections' ends.
    stalled: BTreeMap<String, Vec<std::task::Waker>>,
    /// Wakes requests between nodes in flight whenever a node goes up or down.
    nodes_changed: Arc<tokio::sync::Notify>,
}

impl State {
    fn draw(&mut self, probability: f64) -> bool {
        probability > 0.0
            && self
                .rng
                .as_mut()
                .is_some_and(|r| r.random_bool(probability.min(1.0)))
    }

    fn jitter(&mut self) -> u64 {
        let (delay, max) = (self.faults.delay, self.faults.delay_ms_max);
        if !self.draw(delay) {
            return 0;
        }
        match self.rng.as_mut() {
            Some(r) if max > 0 => r.random_range(0..=max),
            _ => 0,
        }
    }

    fn latency(&self, from: &str, to: &str) -> u64 {
        let a = self.datacenter.get(from).copied().unwrap_or(0);
        let b = self.datacenter.get(to).copied().unwrap_or(0);
        self.latency_ms
            .get(a)
            .and_then(|row| row.get(b))
            .copied()
            .unwrap_or(0)
    }

    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.cut.contains(&(from.to_string(), to.to_string()))
    }
}

#[derive(Clone, Default)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
    budget: Arc<WallBudget>,
}

/// The run's wall-clock budget, checked on every simulated read and write. A livelock that
/// keeps tasks busy at one simulated instant never lets simulated time advance, so a check
/// in the driver's loop would never run; network traffic is where such loops spin.
#[derive(Default)]
struct WallBudget {
    deadline: Mutex<Option<std::time::Instant>>,
    exceeded: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl WallBudget {
    fn check(&self) -> bool {
        if self.exceeded.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let deadline = *self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            self.exceeded
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.notify.notify_one();
            return false;
        }
        true
    }
}

/// Who opens a connection: a node (of one incarnation: a crashed node's leftovers cannot
/// talk) or an agent.
#[derive(Clone, Debug)]
pub enum Endpointed {
    Node { addr: String, incarnation: u64 },
    Agent { certname: String },
}

impl Endpointed {
    fn name(&self) -> &str {
        match self {
            Endpointed::Node { addr, .. } => addr,
            Endpointed::Agent { certname } => certname,
        }
    }
}

impl SimNet {
    pub fn new(seed: u64) -> SimNet {
        let net = SimNet::default();
        {
            let mut state = net.lock();
            state.rng = Some(SmallRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b));
            state.resumed = Some(Arc::new(tokio::sync::Notify::new()));
        }
        net
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the wall-clock time after which every connection fails and
    /// [`SimNet::budget_exceeded`] completes.
    pub fn set_wall_deadline(&self, deadline: std::time::Instant) {
        *self
            .budget
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(deadline);
    }

    /// Completes once the wall-clock budget is exceeded (noticed on network traffic).
    pub async fn budget_exceeded(&self) {
        if !self
            .budget
            .exceeded
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.budget.notify.notified().await;
        }
    }

    /// Sets the HTTP/2 receive window of connections agents open from now on.
    pub fn set_agent_window(&self, bytes: Option<u32>) {
        self.lock().agent_window_bytes = bytes;
    }

    pub fn set_faults(&self, faults: MessageFaults) {
        self.lock().faults = faults;
    }

    /// Places endpoints in datacenters and sets the one-way latency matrix.
    pub fn set_topology(&self, datacenter: BTreeMap<String, usize>, latency_ms: Vec<Vec<u64>>) {
        let mut state = self.lock();
        state.datacenter = datacenter;
        state.latency_ms = latency_ms;
    }

    pub fn up(&self, addr: &str, incarnation: u64, router: axum::Router) {
        let changed = {
            let mut state = self.lock();
            state.nodes.insert(addr.to_string(), (incarnation, router));
            state.nodes_changed.clone()
        };
        changed.notify_waiters();
    }

    pub fn down(&self, addr: &str) {
        let changed = {
            let mut state = self.lock();
            state.nodes.remove(addr);
            state.nodes_changed.clone()
        };
        changed.notify_waiters();
    }

    /// Completes once the connection from `client` to `to` (of `incarnation`) is dead.
    async fn connection_died(&self, client: &Endpointed, to: &str, incarnation: u64) {
        let changed = self.lock().nodes_changed.clone();
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.connection_alive(client, to, incarnation) {
                return;
            }
            notified.await;
        }
    }

    /// Cuts one direction: requests from `from` to `to` (and replies that way) are lost.
    pub fn cut(&self, from: &str, to: &str) {
        self.lock().cut.insert((from.to_string(), to.to_string()));
    }

    /// Cuts both directions.
    pub fn partition(&self, a: &str, b: &str) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Heals both directions between `a` and `b`.
    pub fn uncut(&self, a: &str, b: &str) {
        let mut state = self.lock();
        state.cut.remove(&(a.to_string(), b.to_string()));
        state.cut.remove(&(b.to_string(), a.to_string()));
    }

    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    pub fn pause(&self, addr: &str) {
        self.lock().paused.insert(addr.to_string());
    }

    pub fn resume(&self, addr: &str) {
        let notify = {
            let mut state = self.lock();
            state.paused.remove(addr);
            state.resumed.clone()
        };
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    pub fn resume_all(&self) {
        let paused: Vec<String> = self.lock().paused.iter().cloned().collect();
        for addr in paused {
            self.resume(&addr);
        }
        let stalled: Vec<String> = self.lock().stalled.keys().cloned().collect();
        for certname in stalled {
            self.unstall_agent(&certname);
        }
    }

    /// Stalls an agent's process: its ends of its connections neither read nor write until
    /// [`SimNet::unstall_agent`] (a machine swapping, or a process stopped), while the nodes'
    /// ends stay as they are, their sends backing up behind the agent's receive window.
    pub fn stall_agent(&self, certname: &str) {
        self.lock().stalled.entry(certname.to_string()).or_default();
    }

    pub fn unstall_agent(&self, certname: &str) {
        let waiting = self.lock().stalled.remove(certname).unwrap_or_default();
        for waker in waiting {
            waker.wake();
        }
    }

    /// Whether `certname` is stalled; if so, `cx`'s task is woken when it no longer is.
    fn agent_stalled(&self, certname: &str, cx: &Context<'_>) -> bool {
        match self.lock().stalled.get_mut(certname) {
            Some(waiting) => {
                waiting.push(cx.waker().clone());
                true
            }
            None => false,
        }
    }

    pub fn paused(&self) -> Vec<String> {
        self.lock().paused.iter().cloned().collect()
    }

    /// Whether a connection from `client` to node `to` (of `incarnation`) still works.
    fn connection_alive(&self, client: &Endpointed, to: &str, incarnation: u64) -> bool {
        let state = self.lock();
        if state.nodes.get(to).map(|(i, _)| *i) != Some(incarnation) {
            return false;
        }
        match client {
            Endpointed::Node { addr, incarnation } => {
                state.nodes.get(addr).map(|(i, _)| *i) == Some(*incarnation)
            }
            Endpointed::Agent { certname } => {
                !state.is_cut(certname, to) && !state.is_cut(to, certname)
            }
        }
    }

    /// The incarnation and router of node `to`, if `client` can reach it now.
    fn route(&self, client: &Endpointed, to: &str) -> io::Result<(u64, axum::Router)> {
        {
            let state = self.lock();
            if let Endpointed::Node { addr, incarnation } = client
                && state.nodes.get(addr).map(|(i, _)| *i) != Some(*incarnation)
            {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "this node is down",
                ));
            }
            if let Endpointed::Agent { certname } = client
                && (state.is_cut(certname, to) || state.is_cut(to, certname))
            {
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "link cut"));
            }
            match state.nodes.get(to) {
                Some((incarnation, router)) => Ok((*incarnation, router.clone())),
                None => Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "node down",
                )),
            }
        }
    }

    /// The faults between `client` and node `to`, in front of `router`.
    fn faulty_router(&self, client: &Endpointed, to: &str, router: axum::Router) -> FaultyRouter {
        let certname = match client {
            Endpointed::Node { addr, .. } => porch_raft::member_certname(addr).to_string(),
            Endpointed::Agent { certname } => certname.clone(),
        };
        FaultyRouter {
            net: self.clone(),
            router,
            from: client.name().to_string(),
            to: to.to_string(),
            between_nodes: matches!(client, Endpointed::Node { .. }),
            peer: PeerInfo {
                remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                certname: Some(certname),
                serial: None,
            },
        }
    }

    /// One request from a node to node `to`, handled by `to`'s router on a task of its own
    /// (as a server would: it goes on if the caller gives up). A request or reply lost in
    /// transit never answers (the caller's deadline fires); a connection that dies meanwhile
    /// answers `Unavailable`, as a reset would.
    async fn deliver(
        &self,
        client: Endpointed,
        to: String,
        request: axum::http::Request<tonic::body::Body>,
    ) -> axum::http::Response<tonic::body::Body> {
        let unavailable = |why: String| tonic::Status::unavailable(why).into_http();
        if !self.budget.check() {
            return unavailable("the simulation's wall-clock budget is exceeded".to_string());
        }
        let (incarnation, router) = match self.route(&client, &to) {
            Ok(route) => route,
            Err(e) => return unavailable(e.to_string()),
        };
        let faulty = self.faulty_router(&client, &to, router);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let net = self.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                response = faulty.handle(request) => Ok(response),
                () = net.connection_died(&client, &to, incarnation) => {
                    Err("simulated connection lost".to_string())
                }
            };
            let _ = reply.send(outcome);
        });
        match answer.await {
            Ok(Ok(response)) => response.map(tonic::body::Body::new),
            Ok(Err(why)) => unavailable(why),
            Err(_) => std::future::pending().await,
        }
    }

    /// Opens a connection from agent `client` to the node at `to`.
    fn connect(&self, client: &Endpointed, to: &str) -> io::Result<SimStream> {
        let (incarnation, router) = self.route(client, to)?;
        let (client_end, server_end) = tokio::io::duplex(PIPE_BYTES);
        let server_stream = SimStream {
            inner: server_end,
            net: self.clone(),
            client: client.clone(),
            to: to.to_string(),
            incarnation,
            agent_end: None,
        };
        let faulty = self.faulty_router(client, to, router);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let faulty = faulty.clone();
                async move { Ok::<_, Infallible>(faulty.handle(request).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(server_stream), service)
                .await;
        });
        let agent_end = match client {
            Endpointed::Agent { certname } => Some(certname.clone()),
            Endpointed::Node { .. } => None,
        };
        Ok(SimStream {
            inner: client_end,
            net: self.clone(),
            client: client.clone(),
            to: to.to_string(),
            incarnation,
            agent_end,
        })
    }

    pub fn node_dialer(&self, addr: &str, incarnation: u64) -> Arc<dyn Dialer> {
        Arc::new(NodeDialer {
            net: self.clone(),
            client: Endpointed::Node {
                addr: addr.to_string(),
                incarnation,
            },
        })
    }

    pub fn agent_dialer(&self, certname: &str) -> AgentDialer {
        AgentDialer {
            net: self.clone(),
            client: Endpointed::Agent {
                certname: certname.to_string(),
            },
        }
    }

    /// Waits while `a` or `b` is paused.
    async fn wait_unpaused(&self, a: &str, b: &str) {
        loop {
            let notify = {
                let state = self.lock();
                if !state.paused.contains(a) && !state.paused.contains(b) {
                    return;
                }
                state.resumed.clone()
            };
            match notify {
                Some(notify) => notify.notified().await,
                None => return,
            }
        }
    }
}

/// One node's router behind the request-level faults of one connection.
#[derive(Clone)]
struct FaultyRouter {
    net: SimNet,
    router: axum::Router,
    from: String,
    to: String,
    between_nodes: bool,
    /// Who the connection proves to be, as a verified client certificate would in production:
    /// a node's member certname, an agent's certname.
    peer: PeerInfo,
}

enum Fate {
    Lost,
    Deliver { delay_ms: u64, duplicate: bool },
}

impl FaultyRouter {
    async fn handle<B>(&self, request: axum::http::Request<B>) -> axum::http::Response<Body>
    where
        B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        use tower::ServiceExt;
        let mut request = request.map(Body::new);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer.clone()));
        if !self.between_nodes {
            // Agent sessions: latency once, when the stream opens.
            let delay = self.net.lock().latency(&self.from, &self.to);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            return self
                .router
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|e| match e {});
        }
        self.net.wait_unpaused(&self.from, &self.to).await;
        match self.fate(&self.from, &self.to) {
            Fate::Lost => std::future::pending().await,
            Fate::Deliver {
                delay_ms,
                duplicate,
            } => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let response = if duplicate {
                    self.handle_twice(request).await
                } else {
                    self.router
                        .clone()
                        .oneshot(request)
                        .await
                        .unwrap_or_else(|e| match e {})
                };
                // The reply travels back.
                self.net.wait_unpaused(&self.from, &self.to).await;
                match self.fate(&self.to, &self.from) {
                    Fate::Lost => std::future::pending().await,
                    Fate::Deliver { delay_ms, .. } => {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        response
                    }
                }
            }
        }
    }

    /// Handles a request twice (as a retransmitted duplicate would be); answers with the first.
    async fn handle_twice(&self, request: axum::http::Request<Body>) -> axum::http::Response<Body> {
        use tower::ServiceExt;
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, DUPLICATE_BYTES_MAX).await else {
            return axum::http::Response::builder()
                .status(axum::http::StatusCode::BAD_GATEWAY)
                .body(Body::empty())
                .unwrap_or_default();
        };
        let rebuild = |bytes: axum::body::Bytes| {
            let mut request = axum::http::Request::new(Body::from(bytes));
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.version_mut() = parts.version;
            *request.headers_mut() = parts.headers.clone();
            *request.extensions_mut() = parts.extensions.clone();
            request
        };
        let first = self
            .router
            .clone()
            .oneshot(rebuild(bytes.clone()))
            .await
            .unwrap_or_else(|e| match e {});
        let second = self.router.clone().oneshot(rebuild(bytes));
        tokio::spawn(async move {
            // The duplicate's answer goes nowhere; its body is drained so the handler finishes.
            let Ok(response) = second.await;
            let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        });
        first
    }

    fn fate(&self, from: &str, to: &str) -> Fate {
        let mut state = self.net.lock();
        if state.is_cut(from, to) {
            return Fate::Lost;
        }
        let loss = state.faults.loss;
        if state.draw(loss) {
            return Fate::Lost;
        }
        let duplication = state.faults.duplication;
        let duplicate = state.draw(duplication);
        let delay_ms = state.latency(from, to) + state.jitter();
        Fate::Deliver {
            delay_ms,
            duplicate,
        }
    }
}

/// One end of a simulated connection; fails once the connection is dead (see the module doc).
pub struct SimStream {
    inner: DuplexStream,
    net: SimNet,
    client: Endpointed,
    to: String,
    incarnation: u64,
    /// The agent whose end this is (a stalled agent's end neither reads nor writes).
    agent_end: Option<String>,
}

impl SimStream {
    /// Whether this end belongs to a stalled agent (then `cx` is woken when it resumes).
    fn stalled(&self, cx: &Context<'_>) -> bool {
        self.agent_end
            .as_deref()
            .is_some_and(|certname| self.net.agent_stalled(certname, cx))
    }

    fn check(&self) -> io::Result<()> {
        if self.net.budget.check()
            && self
                .net
                .connection_alive(&self.client, &self.to, self.incarnation)
        {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "simulated connection lost",
            ))
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        if self.stalled(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        if self.stalled(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A node's requests to other nodes, delivered in process.
struct NodeDialer {
    net: SimNet,
    client: Endpointed,
}

impl Dialer for NodeDialer {
    fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        let net = self.net.clone();
        let client = self.client.clone();
        let to = addr.to_string();
        Ok(PeerChannel::new(tower::service_fn(
            move |request: axum::http::Request<tonic::body::Body>| {
                let (net, client, to) = (net.clone(), client.clone(), to.clone());
                async move { Ok::<_, tonic::transport::Error>(net.deliver(client, to, request).await) }
            },
        )))
    }
}

/// An agent's HTTP/2 connections to nodes.
pub struct AgentDialer {
    net: SimNet,
    client: Endpointed,
}

impl AgentDialer {
    pub fn channel(&self, addr: &str) -> Result<Channel, String> {
        let net = self.net.clone();
        let client = self.client.clone();
        let to = addr.to_string();
        let window = self.net.lock().agent_window_bytes;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .initial_stream_window_size(window)
            .initial_connection_window_size(window);
        Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri| {
                let result = net.connect(&client, &to).map(hyper_util::rt::TokioIo::new);
                async move { result }
            })),
        )
    }
}
