//! Sends each committed run start to its agent, if the agent's session is on this node.
//!
//! Driven by the applied-outcome broadcast, so nothing is ever sent for a decision that is
//! not committed. If this task falls behind the broadcast, or the state jumps ahead by a
//! snapshot from the leader (whose entries announce nothing), it re-syncs from the applied
//! state by asking every local agent for the status of its in-flight runs (the agent dedups
//! by transaction id, so a re-send never runs twice).

use super::registry::Registry;
use super::{in_flight_for, run_request};
use porch_agent::proto::{ServerMessage, StatusQuery, server_message::Kind};
use porch_core::Outcome;
use porch_raft::{Applied, AppliedView};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

pub async fn run(view: Arc<AppliedView>, registry: Arc<Registry>) {
    let mut applied = view.subscribe();
    loop {
        match applied.recv().await {
            Ok(Applied::Snapshot { last_index }) => {
                tracing::info!(
                    "installed a snapshot up to index {last_index}; reconciling every local session"
                );
                reconcile_all(&view, &registry);
            }
            Ok(Applied::Entry { outcome, .. }) => {
                // Runs start by the scheduler's decisions, or in the entry submitting the job.
                let started = match outcome {
                    Outcome::RunsStarted { started, .. }
                    | Outcome::JobSubmitted { started, .. } => started,
                    _ => Vec::new(),
                };
                {
                    for run in started {
                        let Some(session) = registry.get(&run.node) else {
                            continue;
                        };
                        let request = {
                            let state = view.read();
                            run_request(&state.cluster, run.job_id, &run.transaction_id)
                        };
                        if let Some(request) = request {
                            let message = ServerMessage {
                                kind: Some(Kind::Run(request)),
                            };
                            if session.sender.try_send(message).is_err() {
                                tracing::warn!(
                                    "session queue of {} is full; the run goes with the session's next status query",
                                    run.node
                                );
                            }
                        }
                    }
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    "delivery lagged {missed} applied entries; reconciling every local session"
                );
                reconcile_all(&view, &registry);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Asks every local agent about its in-flight runs; unknown ones get re-sent by the session.
pub fn reconcile_all(view: &AppliedView, registry: &Registry) {
    for certname in registry.certnames() {
        let txns: Vec<String> = {
            let state = view.read();
            in_flight_for(&state.cluster, &certname)
                .into_iter()
                .map(|(_, txn)| txn)
                .collect()
        };
        if txns.is_empty() {
            continue;
        }
        if let Some(session) = registry.get(&certname) {
            let _ = session.sender.try_send(ServerMessage {
                kind: Some(Kind::StatusQuery(StatusQuery {
                    transaction_ids: txns,
                })),
            });
        }
    }
}
