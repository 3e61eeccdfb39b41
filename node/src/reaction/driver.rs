//! The one executor of the reaction step's effects, and the task that feeds it.
//!
//! [`Reactor::react`] takes a snapshot of what the step may look at (the applied state under
//! its read lock, this node's sessions, its clock, its role), runs [`step::react`] and carries
//! out the effects: a message is queued on the local session without waiting (a full queue is
//! remembered by the session's sender, and that session then reacts with
//! [`Stimulus::SessionOverflowed`]); a proposal is committed in a task of its own. Agent
//! sessions call it for their own stimuli; [`Reactor::run`] for everything else.

use super::{Effect, LeaderDuties, LocalSessions, Situation, Stimulus, step};
use crate::agents::registry::Registry;
use crate::consensus::Consensus;
use crate::tasks::TaskGroup;
use porch_agent::proto::ServerMessage;
use porch_agent::proto::server_message::Kind;
use porch_core::Command;
use porch_raft::Applied;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Longest the leader goes without a turn (expiry needs time to pass without any change).
const TICK: Duration = Duration::from_millis(250);

pub struct Reactor {
    consensus: Arc<Consensus>,
    registry: Arc<Registry>,
    tasks: Arc<TaskGroup>,
    duties: LeaderDuties,
    /// Proposals made and not yet committed (or failed). The leader takes its next turn only
    /// when none are left, so it never proposes a decision twice on a state that does not
    /// show the first one yet.
    proposals_outstanding: AtomicUsize,
    proposal_settled: Notify,
}

impl LocalSessions for Registry {
    fn holds(&self, certname: &str) -> bool {
        self.get(certname).is_some()
    }

    fn certnames(&self) -> Vec<String> {
        Registry::certnames(self)
    }
}

impl Reactor {
    pub fn new(
        consensus: Arc<Consensus>,
        registry: Arc<Registry>,
        tasks: Arc<TaskGroup>,
        duties: LeaderDuties,
    ) -> Reactor {
        Reactor {
            consensus,
            registry,
            tasks,
            duties,
            proposals_outstanding: AtomicUsize::new(0),
            proposal_settled: Notify::new(),
        }
    }

    /// Reacts to `stimulus` now: the pure step over this node's applied state, sessions,
    /// clock and role, then its effects.
    pub fn react(self: &Arc<Self>, stimulus: Stimulus) {
        let effects = {
            let view = self.consensus.view.read();
            let situation = Situation {
                state: &view.cluster,
                sessions: &*self.registry,
                now_ms: self.consensus.clock().now_ms(),
                leader: self.consensus.is_leader().then_some(&self.duties),
            };
            step::react(&situation, stimulus)
        };
        for effect in effects {
            self.execute(effect);
        }
    }

    fn execute(self: &Arc<Self>, effect: Effect) {
        match effect {
            Effect::Send { certname, message } => send(&self.registry, &certname, message),
            Effect::Propose(command) => self.propose(command),
        }
    }

    fn propose(self: &Arc<Self>, command: Command) {
        self.proposals_outstanding.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        self.tasks.spawn(async move {
            if let Err(e) = this.consensus.write(None, command).await {
                tracing::warn!("could not propose the leader's decision: {e}");
            }
            this.proposals_outstanding.fetch_sub(1, Ordering::SeqCst);
            this.proposal_settled.notify_one();
        });
    }

    /// Feeds the step every applied outcome (delivery) and the leader's turns: after applied
    /// changes once the previous proposals settled, and at least every [`TICK`].
    pub async fn run(self: Arc<Self>) {
        let mut applied = self.consensus.view.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_expiry_check_ms = 0u64;
        let mut turn_wanted = true;
        loop {
            tokio::select! {
                biased;
                received = applied.recv() => {
                    if !self.on_applied(received) {
                        return;
                    }
                    turn_wanted = true;
                }
                _ = self.proposal_settled.notified() => {}
                _ = tick.tick() => turn_wanted = true,
            }
            // Everything applied meanwhile first: one leader turn per batch of outcomes, not
            // one per outcome (a scheduling pass walks every unfinished job).
            loop {
                let received = match applied.try_recv() {
                    Ok(applied) => Ok(applied),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                    Err(TryRecvError::Closed) => Err(RecvError::Closed),
                };
                if !self.on_applied(received) {
                    return;
                }
            }
            if turn_wanted
                && self.proposals_outstanding.load(Ordering::SeqCst) == 0
                && self.consensus.is_leader()
            {
                turn_wanted = false;
                let now = self.consensus.clock().now_ms();
                // Expiry walks every run in flight and only moves with time: once per tick,
                // not after every applied entry.
                let expiry_due = now >= next_expiry_check_ms;
                if expiry_due {
                    next_expiry_check_ms = now + TICK.as_millis() as u64;
                }
                self.react(Stimulus::LeaderTurn { expiry_due });
            }
        }
    }

    /// Reacts to one message of the applied broadcast; false once it closed.
    fn on_applied(self: &Arc<Self>, received: Result<Applied, RecvError>) -> bool {
        match received {
            Ok(Applied::Entry { outcome, .. }) => self.react(Stimulus::Applied(&outcome)),
            Ok(Applied::Snapshot { last_index }) => {
                tracing::info!(
                    "installed a snapshot up to index {last_index}; reconciling every local session"
                );
                self.react(Stimulus::AppliedUnannounced);
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    "fell {missed} applied entries behind; reconciling every local session"
                );
                self.react(Stimulus::AppliedUnannounced);
            }
            Err(RecvError::Closed) => return false,
        }
        true
    }
}

/// Queues `message` on `certname`'s session if this node holds one, without waiting. A full
/// queue drops it, and the session's sender remembers that: its session then reacts with
/// [`Stimulus::SessionOverflowed`] and the runs in flight are reconciled.
pub(crate) fn send(registry: &Registry, certname: &str, message: Kind) {
    let Some(session) = registry.get(certname) else {
        return;
    };
    let message = ServerMessage {
        kind: Some(message),
    };
    if session.sender.try_send(message).is_err() {
        tracing::warn!(
            "session queue of {certname} is full; its runs in flight go with the session's next status query"
        );
    }
}
