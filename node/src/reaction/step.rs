//! The pure reaction step: [`react`].

use super::{Effect, Situation, Stimulus};
use crate::agents::{in_flight_for, run_request};
use porch_agent::proto::StatusQuery;
use porch_agent::proto::server_message::Kind;
use porch_core::planted::{self, Bug};
use porch_core::scheduler::{schedule, unreachable_runs};
use porch_core::{ClusterState, Command, Outcome, RunOutcome, RunStart, StartedRun};

/// The effects of `stimulus` in `situation`. Pure: the same inputs give the same effects.
pub fn react(situation: &Situation, stimulus: Stimulus) -> Vec<Effect> {
    match stimulus {
        Stimulus::Applied(outcome) => deliver(situation, outcome),
        Stimulus::AppliedUnannounced => situation
            .sessions
            .certnames()
            .iter()
            .filter_map(|certname| status_query(situation.state, certname))
            .collect(),
        Stimulus::LeaderTurn { expiry_due } => match situation.leader {
            Some(_) => leader_turn(situation, expiry_due),
            None => Vec::new(),
        },
        Stimulus::SessionOpened { certname } => {
            if planted::active(Bug::RedispatchWithoutStatusQuery) {
                return planted_redispatch(situation.state, certname);
            }
            status_query(situation.state, certname)
                .into_iter()
                .collect()
        }
        Stimulus::SessionOverflowed { certname } => {
            if planted::active(Bug::ForgetDroppedRun) {
                return Vec::new();
            }
            status_query(situation.state, certname)
                .into_iter()
                .collect()
        }
        Stimulus::AgentLacks {
            certname,
            transaction_ids,
        } => in_flight_for(situation.state, certname)
            .into_iter()
            .filter(|(_, txn)| transaction_ids.contains(txn))
            .filter_map(|(job_id, txn)| run_request(situation.state, job_id, &txn))
            .map(|request| Effect::Send {
                certname: certname.to_string(),
                message: Kind::Run(request),
            })
            .collect(),
    }
}

/// Committed starts go to their agents whose sessions are here. Runs start by the
/// scheduler's decisions, or in the entry submitting the job.
fn deliver(situation: &Situation, outcome: &Outcome) -> Vec<Effect> {
    let started: &[StartedRun] = match outcome {
        Outcome::RunsStarted { started, .. } | Outcome::JobSubmitted { started, .. } => started,
        _ => &[],
    };
    started
        .iter()
        .filter(|run| situation.sessions.holds(&run.node))
        .filter_map(|run| {
            let request = run_request(situation.state, run.job_id, &run.transaction_id)?;
            Some(Effect::Send {
                certname: run.node.clone(),
                message: Kind::Run(request),
            })
        })
        .collect()
}

/// The leader proposes what may start now and errors the runs of agents out of reach too long.
fn leader_turn(situation: &Situation, expiry_due: bool) -> Vec<Effect> {
    let Some(duties) = situation.leader else {
        return Vec::new();
    };
    let mut effects = Vec::new();
    let starts = schedule(situation.state, &duties.limits);
    if !starts.is_empty() {
        if planted::active(Bug::DispatchBeforeCommit) {
            effects.extend(planted_dispatch_before_commit(situation, &starts));
        }
        effects.push(Effect::Propose(Command::StartRuns {
            runs: starts,
            runs_in_flight_max: Some(
                u32::try_from(duties.limits.runs_in_flight_max).unwrap_or(u32::MAX),
            ),
        }));
    }
    if expiry_due {
        let expired = unreachable_runs(
            situation.state,
            situation.now_ms,
            duties.unreachable_timeout_ms,
        );
        effects.extend(expired.into_iter().map(|(transaction_id, message)| {
            Effect::Propose(Command::ReportRun {
                transaction_id,
                outcome: RunOutcome::Errored { message },
            })
        }));
    }
    effects
}

/// Asks `certname`'s agent about its runs in flight, if it has any: it answers what it
/// never saw (re-sent on [`Stimulus::AgentLacks`]) and re-sends results it holds. The agent
/// dedups by transaction id, so nothing runs twice.
fn status_query(state: &ClusterState, certname: &str) -> Option<Effect> {
    let transaction_ids: Vec<String> = in_flight_for(state, certname)
        .into_iter()
        .map(|(_, txn)| txn)
        .collect();
    (!transaction_ids.is_empty()).then(|| Effect::Send {
        certname: certname.to_string(),
        message: Kind::StatusQuery(StatusQuery { transaction_ids }),
    })
}

/// Planted bug: sends each proposed start to its agent (if connected here) right away.
fn planted_dispatch_before_commit(situation: &Situation, starts: &[RunStart]) -> Vec<Effect> {
    let state = situation.state;
    starts
        .iter()
        .filter_map(|start| {
            let job = state.job(start.job_id)?;
            let name = &job.plan.nodes()[start.node_index as usize].name;
            if !situation.sessions.holds(name) {
                return None;
            }
            let transaction_id =
                state.transaction_id(start.job_id, start.node_index, start.attempt);
            Some(Effect::Send {
                certname: name.clone(),
                message: Kind::Run(run_request(state, start.job_id, &transaction_id)?),
            })
        })
        .collect()
}

/// Planted bug: re-sends every in-flight run of this agent as a new attempt, without asking
/// the agent whether it already ran it.
fn planted_redispatch(state: &ClusterState, certname: &str) -> Vec<Effect> {
    in_flight_for(state, certname)
        .into_iter()
        .filter_map(|(job_id, transaction_id)| {
            let job = state.job(job_id)?;
            let index = job
                .runs
                .iter()
                .position(|r| r.transaction_id.as_deref() == Some(transaction_id.as_str()))?;
            let next = state.transaction_id(job_id, index as u32, job.runs[index].attempt + 1);
            Some(Effect::Send {
                certname: certname.to_string(),
                message: Kind::Run(run_request(state, job_id, &next)?),
            })
        })
        .collect()
}
