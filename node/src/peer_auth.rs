//! Who may speak raft and the internal cluster RPC: only the certnames of current members,
//! proven by the client certificate of the connection (an agent's valid Puppet certificate is
//! not enough). Before a node knows any membership (a founding node before the first entry, a
//! node waiting to be added), it trusts the certnames of its `--initial-cluster`.
//!
//! A member that was behind when another joined does not know the newcomer, and if the
//! newcomer becomes leader, the lagging member would refuse the only node that can bring it
//! up to date, for good. So a certname this node does not know is asked about: each member it
//! does know (over mutual TLS, checked against that member's certname) reports its own
//! membership, and a certname one of them reports is accepted for [`VOUCH_LASTS`] — long
//! enough to catch up, after which this node's own membership decides again. Trust stays
//! with the members: a certificate no member vouches for is refused as before. A member
//! just removed is still heard for [`REMOVED_MEMBER_HEARD`]: a leader that removed itself
//! hands leadership over on its way out.

use crate::consensus::Consensus;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use porch_tls::PeerInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a member's word that a certname joined is taken.
const VOUCH_LASTS: Duration = Duration::from_secs(60);
/// How long a certname this node last accepted as a member is still heard once it is no
/// longer one. A leader that commits its own removal steps down by handing leadership to a
/// remaining member and tells the others the commit; refused, the hand-over was lost and
/// the cluster waited out the old leader's lease and an election timeout (6.4 s without a
/// leader: simulation seed 16346).
const REMOVED_MEMBER_HEARD: Duration = Duration::from_secs(10);
/// Least time between two rounds of questions about the same certname.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(1);

pub struct PeerPolicy {
    pub consensus: Arc<Consensus>,
    /// Certnames of `--initial-cluster`, trusted while no membership is known.
    pub initial_certnames: BTreeSet<String>,
    /// False with `--insecure-http`: connections carry no certificates to check.
    pub required: bool,
    pub vouches: Arc<Vouches>,
}

/// Certnames other members said are members, and when this node last asked about each.
#[derive(Default)]
pub struct Vouches {
    inner: Mutex<VouchState>,
}

#[derive(Default)]
struct VouchState {
    vouched_until: BTreeMap<String, Instant>,
    asked_at: BTreeMap<String, Instant>,
    /// Certnames accepted as members, and when last.
    member_at: BTreeMap<String, Instant>,
}

impl Vouches {
    fn lock(&self) -> std::sync::MutexGuard<'_, VouchState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn vouched(&self, certname: &str) -> bool {
        let state = self.lock();
        let now = Instant::now();
        state
            .vouched_until
            .get(certname)
            .is_some_and(|until| now < *until)
            || state
                .member_at
                .get(certname)
                .is_some_and(|at| now < *at + REMOVED_MEMBER_HEARD)
    }

    /// `certname` was just accepted as a member.
    fn heard_member(&self, certname: &str) {
        let now = Instant::now();
        let mut state = self.lock();
        match state.member_at.get_mut(certname) {
            Some(at) => *at = now,
            None => {
                // Bounded by the members of the last few seconds.
                state
                    .member_at
                    .retain(|_, at| now < *at + REMOVED_MEMBER_HEARD);
                state.member_at.insert(certname.to_string(), now);
            }
        }
    }

    /// Asks the members this node knows, in the background, whether `certname` is one of
    /// theirs (at most one round a second per certname).
    fn ask_about(self: &Arc<Self>, consensus: &Arc<Consensus>, certname: &str) {
        {
            let mut state = self.lock();
            let now = Instant::now();
            if state
                .asked_at
                .get(certname)
                .is_some_and(|at| now < *at + ASK_AGAIN_AFTER)
            {
                return;
            }
            state.asked_at.insert(certname.to_string(), now);
            // Bounded: forget answers and questions that no longer matter.
            state.vouched_until.retain(|_, until| now < *until);
            state.asked_at.retain(|_, at| now < *at + VOUCH_LASTS);
        }
        let (vouches, consensus, certname) =
            (self.clone(), consensus.clone(), certname.to_string());
        tokio::spawn(async move {
            for (id, (addr, _)) in consensus.members() {
                if id == consensus.id {
                    continue;
                }
                let Some(report) = consensus.member_self_status(id, addr).await else {
                    continue;
                };
                if report.member_certnames.contains(&certname) {
                    tracing::info!(
                        "member {id} says '{certname}' is a member: accepting its raft messages while this node catches up"
                    );
                    vouches
                        .lock()
                        .vouched_until
                        .insert(certname, Instant::now() + VOUCH_LASTS);
                    return;
                }
            }
        });
    }
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
        if member {
            self.vouches.heard_member(certname);
            return None;
        }
        if self.vouches.vouched(certname) {
            return None;
        }
        self.vouches.ask_about(&self.consensus, certname);
        Some(format!(
            "'{certname}' is not a member of this cluster: raft and cluster RPC are refused"
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_member_just_removed_is_heard_for_a_while_and_a_stranger_never() {
        let vouches = Vouches::default();
        assert!(!vouches.vouched("node1"), "never a member");
        vouches.heard_member("node1");
        tokio::time::advance(REMOVED_MEMBER_HEARD / 2).await;
        assert!(vouches.vouched("node1"), "removed a moment ago");
        assert!(!vouches.vouched("agent1"), "never a member");
        tokio::time::advance(REMOVED_MEMBER_HEARD).await;
        assert!(!vouches.vouched("node1"), "removed long ago");
    }
}
