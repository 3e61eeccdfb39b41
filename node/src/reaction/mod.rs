//! The node's reactions as one pure step and one small driver (the shape of raft-rs's
//! `Ready`/`advance` and openraft's `Engine` → `Command`).
//!
//! - [`step`]: [`step::react`], a plain function of what this node knows — the applied state,
//!   the agent sessions it holds, its clock, whether it leads — and one [`Stimulus`], returning
//!   the [`Effect`]s to carry out. No tokio, no network, no lock: unit-tested effect by effect.
//! - [`driver`]: [`driver::Reactor`], the one executor of those effects (queue a message on a
//!   local session, propose a command), and the task that feeds it applied outcomes and the
//!   leader's turns. Agent sessions feed it their own stimuli.
//!
//! What it covers: delivery (a committed start goes to its agent if its session is here),
//! the leader's scheduling (the pure `porch_core::scheduler`) and expiry of runs of agents
//! unreachable for too long, and reconciliation (a session that opened, overflowed or missed
//! applied outcomes is asked about its runs in flight; what its agent never saw is re-sent).

pub mod driver;
pub mod step;
#[cfg(test)]
mod tests;

use porch_agent::proto::server_message::Kind;
use porch_core::scheduler::SchedulerLimits;
use porch_core::{Command, Outcome};

/// What the node reacts to.
#[derive(Clone, Copy, Debug)]
pub enum Stimulus<'a> {
    /// An entry was applied with this outcome.
    Applied(&'a Outcome),
    /// The applied state moved without announcing its outcomes: a snapshot was installed, or
    /// this node fell behind the applied broadcast and missed some.
    AppliedUnannounced,
    /// The leader's turn to decide (after applied changes, and at least every tick): starts
    /// for whatever may run now and, if `expiry_due`, expiry of unreachable agents' runs.
    LeaderTurn { expiry_due: bool },
    /// An agent's session opened on this node: it may lack runs started while it was away.
    SessionOpened { certname: &'a str },
    /// A message to this agent's session was dropped for a full queue (perhaps a run start).
    SessionOverflowed { certname: &'a str },
    /// The agent answered a status query: it never received these transactions.
    AgentLacks {
        certname: &'a str,
        transaction_ids: &'a [String],
    },
}

/// Something the node should do; [`driver::Reactor`] carries it out.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Queue `message` on the session of `certname`, if this node still holds one.
    Send { certname: String, message: Kind },
    /// Propose `command` to raft. It takes effect once committed and applied.
    Propose(Command),
}

/// The agent sessions this node holds, as the step sees them.
pub trait LocalSessions {
    fn holds(&self, certname: &str) -> bool;
    fn certnames(&self) -> Vec<String>;
}

/// What only the leader does, and its limits.
#[derive(Clone, Debug)]
pub struct LeaderDuties {
    pub limits: SchedulerLimits,
    /// How long an agent may be out of reach before its runs in flight are errored.
    pub unreachable_timeout_ms: u64,
}

/// Everything the step may look at.
pub struct Situation<'a> {
    pub state: &'a porch_core::ClusterState,
    pub sessions: &'a dyn LocalSessions,
    /// This node's clock (the leader's time, when `leader` is set).
    pub now_ms: u64,
    /// Set while this node leads.
    pub leader: Option<&'a LeaderDuties>,
}
