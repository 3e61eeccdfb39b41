//! The receiving side of raft RPC: decodes a peer's message, checks it comes from this
//! cluster, and hands it to the local openraft instance.

use crate::network::{CLUSTER_ID_HEADER, ClusterIdSource, RpcReply};
use crate::proto::Payload;
use crate::proto::raft_server::Raft as RaftRpc;
use crate::types::{Raft, SnapshotMeta, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

pub struct RaftService {
    raft: Raft,
    cluster_id: ClusterIdSource,
}

impl RaftService {
    pub fn new(raft: Raft, cluster_id: ClusterIdSource) -> RaftService {
        RaftService { raft, cluster_id }
    }

    /// Decodes the payload after checking the sender's cluster id against ours. A peer of
    /// another cluster (a stale address, a copied data dir) is refused, never obeyed.
    fn decode<T: DeserializeOwned>(&self, request: Request<Payload>) -> Result<T, Status> {
        if let (Some(theirs), Some(ours)) = (
            request.metadata().get(CLUSTER_ID_HEADER),
            (self.cluster_id)(),
        ) {
            if theirs.as_bytes() != ours.as_bytes() {
                return Err(Status::failed_precondition(format!(
                    "message from another cluster ({:?}); this node belongs to cluster {ours}",
                    String::from_utf8_lossy(theirs.as_bytes())
                )));
            }
        }
        serde_json::from_slice(&request.into_inner().json)
            .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
    }
}

fn reply<T: Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Response<Payload>, Status> {
    let reply = match result {
        Ok(value) => RpcReply::Ok(value),
        Err(error) => RpcReply::Err(error.to_string()),
    };
    let json = serde_json::to_vec(&reply).map_err(|e| Status::internal(format!("encode: {e}")))?;
    Ok(Response::new(Payload { json }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = self.decode(request)?;
        reply(self.raft.vote(rpc).await)
    }

    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = self.decode(request)?;
        reply(self.raft.append_entries(rpc).await)
    }

    async fn transfer_leader(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let rpc = self.decode(request)?;
        reply(self.raft.handle_transfer_leader(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = self.decode(request)?;
        let snapshot = openraft::storage::Snapshot {
            meta,
            snapshot: data,
        };
        reply(self.raft.install_full_snapshot(vote, snapshot).await)
    }
}
