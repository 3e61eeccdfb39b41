//! The receiving side of `Cluster` RPC: requests other nodes forward to this one because they
//! believe it leads. A node that does not lead answers `NotLeader` with its best hint.

use crate::consensus::{Consensus, LeaderReply, WriteRequest};
use crate::membership::MemberChange;
use porch_raft::proto::Payload;
use porch_raft::proto::cluster_server::Cluster;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ClusterService {
    consensus: Arc<Consensus>,
}

impl ClusterService {
    pub fn new(consensus: Arc<Consensus>) -> ClusterService {
        ClusterService { consensus }
    }
}

fn decode<T: DeserializeOwned>(request: Request<Payload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("undecodable cluster request: {e}")))
}

fn encode<T: Serialize>(reply: LeaderReply<T>) -> Result<Response<Payload>, Status> {
    let json = serde_json::to_vec(&reply).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(Payload { json }))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn write(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let request: WriteRequest = decode(request)?;
        encode(self.consensus.write_as_leader(request).await)
    }

    async fn read_index(&self, _request: Request<Payload>) -> Result<Response<Payload>, Status> {
        encode(self.consensus.read_index_as_leader().await)
    }

    async fn change_member(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let change: MemberChange = decode(request)?;
        if let Err(e) = change.validate() {
            return encode::<()>(LeaderReply::Refused(e));
        }
        encode(self.consensus.change_member_as_leader(change).await)
    }

    async fn status(&self, _request: Request<Payload>) -> Result<Response<Payload>, Status> {
        encode(self.consensus.status_as_leader())
    }

    async fn node_status(&self, _request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let json = serde_json::to_vec(&self.consensus.self_status())
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(Payload { json }))
    }
}
