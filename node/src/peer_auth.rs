//! Who may speak raft and the internal cluster RPC: only the certnames of current members,
//! proven by the client certificate of the connection (an agent's valid Puppet certificate is
//! not enough). Before a node knows any membership (a founding node before the first entry, a
//! node waiting to be added), it trusts the certnames of its `--initial-cluster`.

use crate::consensus::Consensus;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use porch_tls::PeerInfo;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct PeerPolicy {
    pub consensus: Arc<Consensus>,
    /// Certnames of `--initial-cluster`, trusted while no membership is known.
    pub initial_certnames: BTreeSet<String>,
    /// False with `--insecure-http`: connections carry no certificates to check.
    pub required: bool,
}

impl PeerPolicy {
    /// Why a connection with this certificate may not speak raft, if it may not.
    pub fn refusal(&self, certname: Option<&str>) -> Option<String> {
        if !self.required {
            return None;
        }
        let Some(certname) = certname else {
            return Some(
                "raft and cluster RPC need a member's client certificate; none was presented"
                    .into(),
            );
        };
        let member = self
            .consensus
            .is_member_certname(certname)
            .unwrap_or_else(|| self.initial_certnames.contains(certname));
        (!member).then(|| {
            format!(
                "'{certname}' is not a member of this cluster: raft and cluster RPC are refused"
            )
        })
    }
}

/// Middleware for the raft and cluster RPC routes: answers PERMISSION_DENIED to anyone else.
pub async fn require_member(
    State(policy): State<Arc<PeerPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .map(|c| &c.0);
    let certname = peer.and_then(|p| p.certname.as_deref());
    match policy.refusal(certname) {
        None => next.run(request).await,
        Some(why) => {
            let remote = peer.map_or("an unknown address".to_string(), |p| p.remote.to_string());
            tracing::warn!("refused {} from {remote}: {why}", request.uri().path());
            tonic::Status::permission_denied(why)
                .into_http::<axum::body::Body>()
                .into_response()
        }
    }
}
