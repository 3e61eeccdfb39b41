//! Raft RPC client over tonic, behind a [`Dialer`] seam.
//!
//! Production dials TCP (tonic's `Channel`); the simulation hands each request to the peer's
//! router in process, with the same client and server code on either side.
//! Every RPC carries a deadline (openraft's soft TTL): a reply lost in a partition would
//! otherwise stall replication to that peer forever. Every RPC also carries the sender's
//! cluster id, so a node never accepts raft traffic from another cluster's member.

use crate::proto::Payload;
use crate::proto::raft_client::RaftClient;
use crate::types::{NodeId, PeerNode, TypeConfig, Vote};
use crate::written_format::WrittenFormat;
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A connection to a peer node's RPC services (raft, forwarding, status). Boxed so that the
/// simulation can deliver requests in process: going through HTTP/2 framing over in-memory
/// pipes was a third of the simulation's time, and what it tests (tonic's and hyper's
/// transports) the multi-process tests run for real. The error stays tonic's transport error
/// (the simulation answers a failure with a gRPC status instead), so that tonic still tells
/// an unreachable peer from other failures.
pub type PeerChannel = tower::util::BoxCloneSyncService<
    tonic::codegen::http::Request<tonic::body::Body>,
    tonic::codegen::http::Response<tonic::body::Body>,
    tonic::transport::Error,
>;

/// A tonic channel as a [`PeerChannel`].
pub fn peer_channel(channel: tonic::transport::Channel) -> PeerChannel {
    PeerChannel::new(channel)
}

/// Largest message porch sends or accepts between nodes (snapshots travel whole).
pub const MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Metadata key carrying the sender's cluster id.
pub const CLUSTER_ID_HEADER: &str = "porch-cluster-id";

/// Opens gRPC channels to peers. Channels are lazy: connecting happens on first use, and a
/// broken connection is re-established by tonic on the next call.
pub trait Dialer: Send + Sync + 'static {
    fn channel(&self, addr: &str) -> Result<PeerChannel, String>;
}

/// The endpoint for a member address `[certname@]host:port` (the URI stays `http://`: TLS,
/// when used, is done by the connector).
fn endpoint(addr: &str, connect_timeout: Duration) -> Result<tonic::transport::Endpoint, String> {
    let socket = crate::types::member_socket_addr(addr);
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{socket}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true),
    )
}

/// Dials plain TCP (`--insecure-http`).
pub struct TcpDialer {
    pub connect_timeout: Duration,
}

impl Dialer for TcpDialer {
    fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        Ok(peer_channel(
            endpoint(addr, self.connect_timeout)?.connect_lazy(),
        ))
    }
}

/// Dials TLS with this node's Puppet certificate as client certificate, and expects the
/// member's certname on the other end (not the address's host: Puppet certificates are
/// issued for certnames).
pub struct TlsDialer {
    pub identity: Arc<porch_tls::TlsIdentity>,
    pub connect_timeout: Duration,
}

impl Dialer for TlsDialer {
    fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        let connector = porch_tls::TlsConnector::new(self.identity.clone())
            .with_server_name(crate::types::member_certname(addr))?
            .with_connect_timeout(self.connect_timeout);
        Ok(peer_channel(
            endpoint(addr, self.connect_timeout)?.connect_with_connector_lazy(connector),
        ))
    }
}

/// Where the local cluster id comes from (the applied state); `None` until it is set.
pub type ClusterIdSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// openraft's network factory: one [`PeerClient`] per target.
#[derive(Clone)]
pub struct Network {
    dialer: Arc<dyn Dialer>,
    cluster_id: ClusterIdSource,
    /// Requests are sealed in the format the cluster writes: a member of the previous
    /// release reads them until the cluster moves on.
    written_format: WrittenFormat,
    /// This node's raft, once built (the network is made before it): see
    /// [`LOG_REVERTED`].
    local_raft: LocalRaft,
}

/// This node's raft handle, set once it exists.
pub type LocalRaft = Arc<std::sync::OnceLock<crate::types::Raft>>;

/// What a follower answers an AppendEntries that starts past its log while its log is behind
/// what it may have acknowledged (it cut entries it found corrupt at start: `crate::repair`).
/// The leader allows that follower's log to go back (`allow_next_revert`) and then takes the
/// answer as a conflict, instead of taking the shorter log for a bug — which openraft does
/// otherwise, by stopping in a debug build and by probing from the lost entries for ever in
/// a release one.
pub const LOG_REVERTED: &str = "log reverted after corruption";

impl Network {
    pub fn new(
        dialer: Arc<dyn Dialer>,
        cluster_id: ClusterIdSource,
        written_format: WrittenFormat,
        local_raft: LocalRaft,
    ) -> Network {
        Network {
            dialer,
            cluster_id,
            written_format,
            local_raft,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerClient {
        PeerClient {
            target,
            channel: self.dialer.channel(&node.addr),
            cluster_id: self.cluster_id.clone(),
            written_format: self.written_format.clone(),
            local_raft: self.local_raft.clone(),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    channel: Result<PeerChannel, String>,
    cluster_id: ClusterIdSource,
    written_format: WrittenFormat,
    local_raft: LocalRaft,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

enum CallError {
    Unreachable(String),
    Network(String),
    Timeout,
}

impl PeerClient {
    /// Sends `request` sealed in format `version`.
    async fn call<Req, Resp, F, Fut>(
        &self,
        version: u16,
        request: &Req,
        ttl: Duration,
        method: F,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftClient<PeerChannel>, tonic::Request<Payload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Payload>, tonic::Status>>,
    {
        let channel = self.channel.clone().map_err(CallError::Unreachable)?;
        let json = crate::wire::encode(version, request)
            .map_err(|e| CallError::Network(format!("encode: {e}")))?;
        let mut grpc_request = tonic::Request::new(Payload { json });
        if let Some(id) = (self.cluster_id)()
            && let Ok(value) = id.parse()
        {
            grpc_request.metadata_mut().insert(CLUSTER_ID_HEADER, value);
        }
        let client = RaftClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let response = match tokio::time::timeout(ttl, method(client, grpc_request)).await {
            Err(_) => return Err(CallError::Timeout),
            Ok(Err(status)) => {
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::FailedPrecondition => {
                        CallError::Unreachable(format!(
                            "node {}: {}",
                            self.target,
                            status.message()
                        ))
                    }
                    _ => CallError::Network(format!("node {}: {status}", self.target)),
                });
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        crate::wire::decode(&response.json)
            .map(|(reply, _)| reply)
            .map_err(|e| {
                CallError::Network(format!(
                    "node {} sent an undecodable reply: {e}",
                    self.target
                ))
            })
    }

    fn rpc_error(
        &self,
        error: CallError,
        action: openraft::network::RPCTypes,
        ttl: Duration,
    ) -> RPCError<TypeConfig> {
        match error {
            CallError::Unreachable(m) => {
                RPCError::Unreachable(Unreachable::new(&TransportError(m)))
            }
            CallError::Network(m) => RPCError::Network(NetworkError::new(&TransportError(m))),
            CallError::Timeout => RPCError::Timeout(Timeout {
                action,
                id: 0,
                target: self.target,
                timeout: ttl,
            }),
        }
    }

    /// An RPC without entries (a vote, a hand-over): sealed in the format the cluster writes,
    /// lost after openraft's soft TTL, its failures as openraft's errors.
    async fn small_rpc<Req, Resp, F, Fut>(
        &self,
        request: &Req,
        option: RPCOption,
        action: openraft::network::RPCTypes,
        method: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftClient<PeerChannel>, tonic::Request<Payload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Payload>, tonic::Status>>,
    {
        let ttl = option.soft_ttl();
        self.call(self.written_format.get(), request, ttl, method)
            .await
            .and_then(flatten)
            .map_err(|e| self.rpc_error(e, action, ttl))
    }
}

/// A remote failure inside the RPC handler (e.g. the peer's raft stopped) travels as a string.
#[derive(Serialize, serde::Deserialize)]
pub(crate) enum RpcReply<T> {
    Ok(T),
    Err(String),
}

fn flatten<T>(reply: RpcReply<T>) -> Result<T, CallError> {
    match reply {
        RpcReply::Ok(value) => Ok(value),
        RpcReply::Err(message) => Err(CallError::Network(message)),
    }
}

/// The least time an AppendEntries carrying entries gets before it counts as lost.
const ENTRIES_RPC_TIMEOUT_MIN: Duration = Duration::from_millis(1000);

/// The slowest link a snapshot is expected to cross, bytes per second (1 MiB/s: a congested
/// link between datacenters).
const SNAPSHOT_BYTES_PER_SECOND_MIN: u64 = 1024 * 1024;

/// How long an InstallSnapshot may take before it counts as lost: as long as an
/// AppendEntries with entries (it includes the follower's fsync), plus the snapshot's
/// transfer at [`SNAPSHOT_BYTES_PER_SECOND_MIN`]. `soft_ttl` is openraft's, from its
/// `install_snapshot_timeout`, which porch sets to the heartbeat interval. Not a fixed 30 s: while a lost snapshot
/// message waits out its timeout the follower receives nothing, and the simulation saw
/// several followers stalled that way at once leave a leader without a quorum for 30 s at a
/// time (snapshots every few entries under message loss).
fn snapshot_rpc_timeout(soft_ttl: Duration, snapshot_bytes: usize) -> Duration {
    let transfer_ms = (snapshot_bytes as u64).saturating_mul(1000) / SNAPSHOT_BYTES_PER_SECOND_MIN;
    soft_ttl.max(ENTRIES_RPC_TIMEOUT_MIN) + Duration::from_millis(transfer_ms)
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft derives every replication timeout from the heartbeat (¾ of it: 75 ms at
        // defaults). A heartbeat must fail that fast, but a batch of entries includes the
        // follower's fsync, which under load takes longer: timing it out only makes the leader
        // send it again and stalls that follower's replication (seen a dozen times per 10 s at
        // 64 clients). A dead follower still fails at once (connection refused or reset).
        let ttl = if rpc.entries.is_empty() {
            option.soft_ttl()
        } else {
            option.soft_ttl().max(ENTRIES_RPC_TIMEOUT_MIN)
        };
        let version = self.written_format.for_entries(&rpc.entries);
        let reply = self
            .call(version, &rpc, ttl, |mut c, r| async move {
                c.append_entries(r).await
            })
            .await
            .and_then(flatten);
        if let Err(CallError::Network(message)) = &reply
            && message.contains(LOG_REVERTED)
            && let Some(raft) = self.local_raft.get()
            && raft
                .trigger()
                .allow_next_revert(&self.target, true)
                .await
                .is_ok()
        {
            // The follower lacks the request's previous entry: a conflict, which
            // openraft now meets by searching the follower's log from scratch.
            return Ok(AppendEntriesResponse::Conflict);
        }
        reply.map_err(|e| self.rpc_error(e, openraft::network::RPCTypes::AppendEntries, ttl))
    }

    async fn transfer_leader(
        &mut self,
        rpc: openraft::raft::TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<openraft::raft::TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.small_rpc(
            &rpc,
            option,
            openraft::network::RPCTypes::TransferLeader,
            |mut c, r| async move { c.transfer_leader(r).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.small_rpc(
            &rpc,
            option,
            openraft::network::RPCTypes::Vote,
            |mut c, r| async move { c.vote(r).await },
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.small_rpc(
            &rpc,
            option,
            openraft::network::RPCTypes::Vote,
            |mut c, r| async move { c.pre_vote(r).await },
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let ttl = snapshot_rpc_timeout(option.soft_ttl(), snapshot.snapshot.len());
        let request = (vote, snapshot.meta, snapshot.snapshot);
        let call = self.call(
            self.written_format.get(),
            &request,
            ttl,
            |mut c, r| async move { c.install_snapshot(r).await },
        );
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = call => match reply.and_then(flatten) {
                Ok(response) => Ok(response),
                Err(CallError::Unreachable(m)) => Err(StreamingError::Unreachable(Unreachable::new(&TransportError(m)))),
                Err(CallError::Network(m)) => Err(StreamingError::Network(NetworkError::new(&TransportError(m)))),
                Err(CallError::Timeout) => Err(StreamingError::Timeout(Timeout {
                    action: openraft::network::RPCTypes::InstallSnapshot,
                    id: 0,
                    target: self.target,
                    timeout: ttl,
                })),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_rpc_waits_for_its_transfer_not_a_fixed_half_minute() {
        let heartbeat_ttl = Duration::from_millis(75);
        assert_eq!(
            snapshot_rpc_timeout(heartbeat_ttl, 10_000),
            Duration::from_millis(1009),
            "a small snapshot lost in transit costs about a second"
        );
        assert_eq!(
            snapshot_rpc_timeout(heartbeat_ttl, 100 * 1024 * 1024),
            Duration::from_secs(101),
            "a large one gets its transfer time at 1 MiB/s"
        );
        assert_eq!(
            snapshot_rpc_timeout(Duration::from_secs(3), 0),
            Duration::from_secs(3)
        );
    }
}
