//! Assembles a node from its parts and serves it: one listening address carries raft RPC,
//! the internal cluster RPC and the HTTP API (gRPC requests are told apart by path).

use crate::access::audit_recorder::AuditRecorder;
use crate::agents::registry::Registry;
use crate::agents::session::SessionService;
use crate::api::{self, ApiState};
use crate::clock::{Clock, SystemClock};
use crate::cluster_service::ClusterService;
use crate::config::NodeConfig;
use crate::consensus::Consensus;
use crate::identity::{self, DataDirState};
use crate::peer_auth::{PeerPolicy, require_member};
use crate::reaction::LeaderDuties;
use crate::reaction::driver::Reactor;
use crate::tasks::TaskGroup;
use porch_agent::proto::agent_sessions_server::AgentSessionsServer;
use porch_core::scheduler::SchedulerLimits;
use porch_raft::network::{
    ClusterIdSource, Dialer, MESSAGE_BYTES_MAX, Network, TcpDialer, TlsDialer,
};
use porch_raft::proto::{cluster_server::ClusterServer, raft_server::RaftServer};
use porch_raft::raft_service::RaftService;
use porch_raft::{Disk, LogStore, PeerNode, Raft, SledDisk, StateMachineStore};
use porch_tls::{PeerInfo, PlainListener, TlsListener};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Heartbeats on agent sessions; three missed end the session.
pub const AGENT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// The side-effecting parts a node is built from. Production: system clock, TCP, sled.
pub struct NodeEnv {
    pub clock: Arc<dyn Clock>,
    pub dialer: Arc<dyn Dialer>,
    pub disk: Arc<dyn Disk>,
    /// The node's TLS identity, whose current CRL cuts off sessions of certificates revoked
    /// after they connected (`None`: plain HTTP, or the simulation's network).
    pub tls: Option<Arc<porch_tls::TlsIdentity>>,
}

/// A running node: its consensus handle and the service that answers its address.
pub struct Node {
    pub consensus: Arc<Consensus>,
    pub router: axum::Router,
    /// This start initialised a new cluster (the founding member's very first start).
    pub initialised_cluster: bool,
    /// Every task of this node (loops, agent sessions, pending commits).
    tasks: Arc<TaskGroup>,
}

impl Node {
    pub async fn shutdown(self) {
        self.tasks.abort_all();
        let _ = self.consensus.raft.shutdown().await;
    }
}

pub async fn build(config: &NodeConfig, env: NodeEnv) -> Result<Node, String> {
    let data_dir = config.data_dir.display().to_string();
    let puppetdb = match &config.puppetdb {
        Some(puppetdb) => {
            if puppetdb.url.starts_with("http://") {
                tracing::warn!(
                    "--puppetdb-url {}: queries and their answers travel unencrypted",
                    puppetdb.url
                );
            }
            tracing::info!(
                "--query targets are looked up in PuppetDB at {}",
                puppetdb.url
            );
            Some(Arc::new(crate::puppetdb::PuppetDb::new(
                puppetdb.clone(),
                env.tls.clone(),
            )?))
        }
        None => None,
    };
    let fresh = identity::claim(env.disk.as_ref(), config.id, &data_dir).await?;
    let (repairs, vote_floor) =
        porch_raft::repair::check_and_repair(env.disk.as_ref(), &data_dir).await?;
    for repair in &repairs {
        tracing::warn!("{data_dir}: corrupt data found at start: {repair}");
    }
    let state_machine = StateMachineStore::open_with_capacity(
        env.disk.clone(),
        config.capacities.applied_broadcast,
    )
    .map_err(|e| format!("{data_dir}: cannot load the snapshot: {e}"))?;
    let view = state_machine.view();
    let log_store = LogStore::new(env.disk.clone(), view.written_format());
    let (log_metrics, snapshot_metrics) = (log_store.metrics(), state_machine.metrics());
    let cluster_id: ClusterIdSource = {
        let view = view.clone();
        Arc::new(move || view.read().cluster.cluster_id().map(str::to_string))
    };
    let local_raft = porch_raft::network::LocalRaft::default();
    let network = Network::new(
        env.dialer.clone(),
        cluster_id.clone(),
        view.written_format(),
        local_raft.clone(),
    );
    let raft_config = Arc::new(config.openraft_config()?);
    let raft = Raft::new(config.id, raft_config, network, log_store, state_machine)
        .await
        .map_err(|e| format!("cannot start raft: {e}"))?;
    let _ = local_raft.set(raft.clone());
    let consensus = Arc::new(Consensus::new(
        config.id,
        raft.clone(),
        view,
        env.clock.clone(),
        env.dialer.clone(),
        env.disk.clone(),
        config.request_timeout,
        u32::try_from(config.runs_in_flight_max).unwrap_or(u32::MAX),
    ));
    let initialised_cluster =
        fresh == DataDirState::Fresh && config.initial_cluster.keys().next() == Some(&config.id);
    if initialised_cluster {
        // Exactly one founding member initialises: the one with the lowest id, and only on
        // its very first start (a restart finds its identity and never re-initialises).
        let members: BTreeMap<u64, PeerNode> = config
            .initial_cluster
            .iter()
            .map(|(id, addr)| {
                let mut node = PeerNode::at(addr.clone());
                if *id == config.id {
                    node.datacenter = config.datacenter.clone();
                }
                (*id, node)
            })
            .collect();
        raft.initialize(members)
            .await
            .map_err(|e| format!("cannot initialise the cluster: {e}"))?;
        tracing::info!(
            "initialised a new cluster with members {:?}",
            config.initial_cluster
        );
    }
    let (audit, audit_queue) = AuditRecorder::new();
    let api_state = Arc::new(
        ApiState::new(
            consensus.clone(),
            config.codedir.clone(),
            audit.clone(),
            if config.insecure_http {
                "http"
            } else {
                "https"
            },
        )
        .with_puppetdb(puppetdb.clone()),
    );
    let raft_service = RaftService::new(
        raft.clone(),
        cluster_id,
        Duration::from_millis(config.raft.election_timeout_max_ms),
        vote_floor,
    );
    let leader_contact = raft_service.leader_contact();
    let grpc = tonic::service::Routes::new(
        RaftServer::new(raft_service)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
    )
    .add_service(
        ClusterServer::new(ClusterService::new(consensus.clone()))
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
    )
    .into_axum_router();
    let registry = Arc::new(Registry::new(config.capacities.session_queue));
    let tasks = Arc::new(TaskGroup::default());
    tasks.spawn(audit.run(consensus.clone(), audit_queue));
    let reactor = Arc::new(Reactor::new(
        consensus.clone(),
        registry.clone(),
        tasks.clone(),
        LeaderDuties {
            limits: SchedulerLimits {
                runs_in_flight_max: config.runs_in_flight_max,
                ..SchedulerLimits::default()
            },
            unreachable_timeout_ms: config.agent_unreachable_timeout.as_millis() as u64,
        },
    ));
    let sessions = tonic::service::Routes::new(AgentSessionsServer::new(SessionService::new(
        consensus.clone(),
        registry.clone(),
        reactor.clone(),
        config.agent_heartbeat_interval,
        tasks.clone(),
        !config.insecure_http,
        env.tls.clone(),
        config.codedir.clone(),
    )))
    .into_axum_router();
    let peer_policy = Arc::new(PeerPolicy {
        consensus: consensus.clone(),
        initial_certnames: config
            .initial_cluster
            .values()
            .map(|addr| porch_raft::member_certname(addr).to_string())
            .collect(),
        required: !config.insecure_http,
        vouches: Default::default(),
    });
    let internal = axum::Router::new()
        .route_service(
            "/porch.internal.v1.Raft/{*method}",
            grpc.clone().into_service(),
        )
        .route_service("/porch.internal.v1.Cluster/{*method}", grpc.into_service())
        .route_layer(axum::middleware::from_fn_with_state(
            peer_policy,
            require_member,
        ));
    let sources = Arc::new(crate::metrics::Sources {
        consensus: consensus.clone(),
        agents: registry.clone(),
        leader_contact,
        log: log_metrics,
        snapshots: snapshot_metrics,
        flushes: env.disk.flush_metrics(),
        quorum_contact_max: Duration::from_millis(config.raft.election_timeout_max_ms),
        started: std::time::Instant::now(),
    });
    let http_metrics = Arc::new(crate::metrics::http::HttpMetrics::default());
    let metrics = Arc::new(crate::metrics::NodeMetrics::new(
        sources.clone(),
        &http_metrics,
    ));
    // The request metrics wrap the public routes only (a layer applies to the routes merged
    // so far): raft RPC and agent session streams would only blur the API's latencies.
    let console = crate::console::router(
        api::router(api_state.clone()),
        consensus.clone(),
        sources.clone(),
        api_state.scheme,
    );
    let public = api::router(api_state.clone())
        .merge(console)
        .merge(api::status::router(sources, api_state.clone()))
        .merge(crate::metrics::router(metrics, api_state));
    let public = if config.request_metrics {
        public.layer(crate::metrics::http::ObserveLayer::new(http_metrics))
    } else {
        public
    };
    let router = public.merge(internal).route_service(
        "/porch.agent.v1.AgentSessions/{*method}",
        sessions.into_service(),
    );
    tasks.spawn(crate::housekeeping::run(
        consensus.clone(),
        config.entropy,
        crate::housekeeping::Retention {
            ended_for: config.job_prune_threshold,
            ended_kept_max: config.jobs_kept_max,
        },
    ));
    tasks.spawn(reactor.run());
    tasks.spawn(crate::schedule_firing::run(
        consensus.clone(),
        crate::schedule_firing::Planning {
            codedir: config.codedir.clone(),
            puppetdb,
        },
    ));
    if let Some(datacenter) = &config.datacenter {
        tasks.spawn(crate::membership::keep_own_label(
            consensus.clone(),
            datacenter.clone(),
        ));
    }
    Ok(Node {
        consensus,
        router,
        initialised_cluster,
        tasks,
    })
}

/// Runs a production node until Ctrl+C or SIGTERM: sled in `--data-dir`, TCP on `--listen`.
pub async fn serve(config: NodeConfig) -> Result<(), String> {
    // openraft's randomness (election timeouts) comes from this seed; see `porch_raft::types`.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ ((std::process::id() as u64) << 32)
        ^ config.id;
    porch_raft::types::seeded(seed, serve_seeded(config)).await
}

async fn serve_seeded(config: NodeConfig) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "--data-dir {}: cannot create: {e}",
            config.data_dir.display()
        )
    })?;
    let probe = config.data_dir.join(".porch-write-test");
    std::fs::write(&probe, b"ok").map_err(|e| {
        format!(
            "--data-dir {}: not writable: {e}",
            config.data_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    let disk = SledDisk::open(&config.data_dir.join("sled")).map_err(|e| {
        format!(
            "--data-dir {}: cannot open the store: {e}",
            config.data_dir.display()
        )
    })?;
    let identity = match &config.tls {
        Some(paths) => {
            Some(porch_tls::TlsIdentity::load(paths.clone()).map_err(|e| e.to_string())?)
        }
        None if config.insecure_http => None,
        None => {
            return Err(
                "no certificate: give --ssldir or --cert/--key/--cacert (or --insecure-http)"
                    .into(),
            );
        }
    };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("--listen {}: cannot bind: {e}", config.listen))?;
    let connect_timeout = Duration::from_secs(2);
    let dialer: Arc<dyn Dialer> = match &identity {
        Some(identity) => Arc::new(TlsDialer {
            identity: identity.clone(),
            connect_timeout,
        }),
        None => Arc::new(TcpDialer { connect_timeout }),
    };
    let env = NodeEnv {
        clock: Arc::new(SystemClock),
        dialer,
        disk: Arc::new(disk),
        tls: identity.clone(),
    };
    let node = build(&config, env).await?;
    set_up_first_admin(&node, &config.data_dir)?;
    let app = node.router.clone();
    // `into_make_service_with_connect_info` hands each connection a clone of the router (an
    // `Arc`) plus who is connected. Serving the `Router` itself rebuilds its route table for
    // every connection (`with_state(())`): 9 KB per connected agent, measured with heaptrack.
    let app = app.into_make_service_with_connect_info::<PeerInfo>();
    let serving: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> =
        match &identity {
            Some(identity) => {
                tracing::info!(
                    "node {} serving TLS on {} as '{}' (certificate {}, CA {})",
                    config.id,
                    config.listen,
                    identity.certname(),
                    identity.paths().cert.display(),
                    identity.paths().cacert.display()
                );
                let _reloader = identity.spawn_reloader(config.tls_reload_every);
                let listener = TlsListener::new(listener, identity.clone());
                Box::pin(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown_signal())
                        .into_future(),
                )
            }
            None => {
                tracing::warn!(
                    "node {} serving PLAIN HTTP on {} (--insecure-http): traffic is unencrypted and agents and peers are not authenticated",
                    config.id,
                    config.listen
                );
                let listener = PlainListener::new(listener);
                Box::pin(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown_signal())
                        .into_future(),
                )
            }
        };
    let result = tokio::select! {
        served = serving => served.map_err(|e| format!("server failed: {e}")),
        why = raft_stopped(node.consensus.raft.clone()) => Err(why),
    };
    node.shutdown().await;
    result
}

/// The initialising node writes the first admin's credential and commits that admin; after a
/// restart before the commit, the file still there makes it try again.
fn set_up_first_admin(node: &Node, data_dir: &std::path::Path) -> Result<(), String> {
    use crate::access::bootstrap;
    let path = bootstrap::credential_path(data_dir);
    let password = if node.initialised_cluster {
        let password = bootstrap::write_admin_credential(data_dir)?;
        tracing::info!(
            "the first admin's credential is in {} (readable by this user only): log in with it, then create your own admin and delete the file",
            path.display()
        );
        password
    } else if path.exists()
        && !node
            .consensus
            .view
            .read()
            .cluster
            .access()
            .is_bootstrapped()
    {
        bootstrap::read_password_file(&path)?
    } else {
        return Ok(());
    };
    node.tasks
        .spawn(bootstrap::run(node.consensus.clone(), password));
    Ok(())
}

/// Resolves when raft stopped on its own: openraft stops for good on a storage error (a
/// failed disk, a corrupt file). A node serving HTTP with a dead raft would only answer
/// timeouts, so the process exits with the reason instead, for its supervisor to see and
/// restart it from what is on disk.
async fn raft_stopped(raft: Raft) -> String {
    use openraft::rt::watch::WatchReceiver;
    // Watches the server metrics (vote, role, leader, membership: they change a few times per
    // election), not the full metrics, which change several times per write: waiting on those
    // woke this future — on the process's main thread — ~5,000 times a second at 1,000
    // writes/s. The core drops the watch's sender when it stops, which ends `changed`; the
    // periodic look is a second line should a stop ever leave the sender alive.
    let mut server = raft.server_metrics();
    loop {
        if let Err(fatal) = &raft.metrics().borrow_watched().running_state {
            return format!("raft stopped: {fatal}");
        }
        if let Ok(Err(_)) = tokio::time::timeout(RAFT_STOP_CHECK, server.changed()).await {
            return match &raft.metrics().borrow_watched().running_state {
                Err(fatal) => format!("raft stopped: {fatal}"),
                Ok(()) => "raft stopped".to_string(),
            };
        }
    }
}

/// Longest a raft stop goes unnoticed if it did not close the server metrics watch.
const RAFT_STOP_CHECK: Duration = Duration::from_secs(1);

/// Resolves on Ctrl+C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
