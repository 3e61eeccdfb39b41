//! The reaction step, effect by effect, in concrete situations: no tokio, no network.

use super::driver::send;
use super::step::react;
use super::{Effect, LeaderDuties, LocalSessions, Situation, Stimulus};
use crate::agents::registry::Registry;
use porch_agent::proto::server_message::Kind;
use porch_agent::proto::{Heartbeat, ServerMessage, StatusQuery};
use porch_core::scheduler::SchedulerLimits;
use porch_core::{
    ClusterState, Command, JobId, JobSpec, Outcome, Plan, Request, RunOutcome, RunResult, Target,
};
use std::collections::BTreeSet;

const TIMEOUT_MS: u64 = 30_000;

struct Sessions(BTreeSet<String>);

impl Sessions {
    fn of(names: &[&str]) -> Sessions {
        Sessions(names.iter().map(|n| n.to_string()).collect())
    }
}

impl LocalSessions for Sessions {
    fn holds(&self, certname: &str) -> bool {
        self.0.contains(certname)
    }
    fn certnames(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// An applied state, advanced by applying commands at increasing leader times.
struct Cluster {
    state: ClusterState,
    now_ms: u64,
    duties: LeaderDuties,
}

impl Cluster {
    fn new() -> Cluster {
        let mut cluster = Cluster {
            state: ClusterState::new(),
            now_ms: 1_000,
            duties: LeaderDuties {
                limits: SchedulerLimits::default(),
                unreachable_timeout_ms: TIMEOUT_MS,
            },
        };
        cluster.apply(Command::SetClusterId {
            cluster_id: "c".into(),
        });
        cluster
    }

    fn apply(&mut self, command: Command) -> Outcome {
        self.now_ms += 1;
        self.state.apply(Request {
            request_id: None,
            now_ms: self.now_ms,
            command,
            origin: None,
        })
    }

    fn submit(&mut self, nodes: &[&str], concurrency: Option<u32>) -> JobId {
        let spec = JobSpec {
            environment: "production".into(),
            target: Target::Nodes(nodes.iter().map(|n| n.to_string()).collect()),
            noop: false,
            no_noop: false,
            concurrency,
            enforce_environment: true,
            debug: false,
            trace: false,
            evaltrace: false,
            description: None,
            owner: porch_core::Actor {
                id: "test".into(),
                login: "test".into(),
            },
            task: None,
        };
        let plan = Plan::independent(nodes.iter().map(|n| n.to_string())).unwrap();
        match self.apply(Command::SubmitJob {
            spec,
            plan,
            start_under_cap: None,
        }) {
            Outcome::JobSubmitted { job_id, .. } => job_id,
            other => panic!("submit failed: {other:?}"),
        }
    }

    /// The effects of `stimulus` on a node holding `sessions`, as leader or follower.
    fn react(&self, sessions: &dyn LocalSessions, leader: bool, stimulus: Stimulus) -> Vec<Effect> {
        let situation = Situation {
            state: &self.state,
            sessions,
            now_ms: self.now_ms,
            leader: leader.then_some(&self.duties),
        };
        react(&situation, stimulus)
    }

    /// The leader's turn; applies what it proposes, as raft would, and returns the outcomes.
    fn leader_turn(&mut self, expiry_due: bool) -> Vec<Outcome> {
        let effects = self.react(
            &Sessions::of(&[]),
            true,
            Stimulus::LeaderTurn { expiry_due },
        );
        proposals(effects)
            .into_iter()
            .map(|command| self.apply(command))
            .collect()
    }
}

fn proposals(effects: Vec<Effect>) -> Vec<Command> {
    effects
        .into_iter()
        .map(|effect| match effect {
            Effect::Propose(command) => command,
            other => panic!("the leader's turn only proposes: {other:?}"),
        })
        .collect()
}

/// `(certname, transaction id)` of each run request sent.
fn runs_sent(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send {
                certname,
                message: Kind::Run(request),
            } => Some((certname.clone(), request.transaction_id.clone())),
            _ => None,
        })
        .collect()
}

fn status_query(certname: &str, transaction_ids: &[&str]) -> Effect {
    Effect::Send {
        certname: certname.into(),
        message: Kind::StatusQuery(StatusQuery {
            transaction_ids: transaction_ids.iter().map(|t| t.to_string()).collect(),
        }),
    }
}

fn pair(certname: &str, transaction_id: &str) -> (String, String) {
    (certname.to_string(), transaction_id.to_string())
}

#[test]
fn a_runnable_job_starts_once_committed_for_the_nodes_connected_here() {
    let mut cluster = Cluster::new();
    cluster.submit(&["a", "b", "c"], None);
    let here = Sessions::of(&["a", "c"]);
    assert!(
        cluster
            .react(&here, false, Stimulus::LeaderTurn { expiry_due: true })
            .is_empty(),
        "a follower decides nothing"
    );
    let effects = cluster.react(&here, true, Stimulus::LeaderTurn { expiry_due: false });
    assert!(
        runs_sent(&effects).is_empty(),
        "nothing is sent before the start is committed"
    );
    let [Effect::Propose(command @ Command::StartRuns { runs, .. })] = effects.as_slice() else {
        panic!("expected one StartRuns proposal: {effects:?}");
    };
    assert_eq!(runs.len(), 3);
    let outcome = cluster.apply(command.clone());
    let effects = cluster.react(&here, false, Stimulus::Applied(&outcome));
    assert_eq!(
        runs_sent(&effects),
        vec![pair("a", "c-1-0-1"), pair("c", "c-1-2-1")],
        "each node connected here gets its run; b's session is elsewhere"
    );
    assert!(
        cluster
            .react(&here, true, Stimulus::LeaderTurn { expiry_due: false })
            .is_empty(),
        "nothing is left to start"
    );
}

#[test]
fn a_run_dropped_by_a_full_session_queue_is_retried_never_lost() {
    let mut cluster = Cluster::new();
    cluster.submit(&["a"], None);
    let outcomes = cluster.leader_turn(false);
    let registry = Registry::new(1);
    let (sender, mut queue) = registry.new_session_queue();
    registry.register("a", sender.clone());
    sender
        .try_send(ServerMessage {
            kind: Some(Kind::Heartbeat(Heartbeat { sequence: 1 })),
        })
        .unwrap();
    // The queue of one is full: the run start is dropped, and the sender remembers it.
    for effect in cluster.react(&registry, false, Stimulus::Applied(&outcomes[0])) {
        let Effect::Send { certname, message } = effect else {
            panic!("delivery only sends");
        };
        send(&registry, &certname, message);
    }
    assert!(queue.try_recv().is_ok(), "the heartbeat");
    assert!(queue.try_recv().is_err(), "the run start was dropped");
    assert!(sender.take_overflow(), "the drop is remembered");
    // The session reacts at its next heartbeat: it asks about the run in flight ...
    let effects = cluster.react(
        &registry,
        false,
        Stimulus::SessionOverflowed { certname: "a" },
    );
    assert_eq!(effects, vec![status_query("a", &["c-1-0-1"])]);
    // ... and the agent, which never saw it, gets it again.
    let lacking = ["c-1-0-1".to_string()];
    let effects = cluster.react(
        &registry,
        false,
        Stimulus::AgentLacks {
            certname: "a",
            transaction_ids: &lacking,
        },
    );
    assert_eq!(runs_sent(&effects), vec![pair("a", "c-1-0-1")]);
}

#[test]
fn a_reconnected_agent_is_asked_about_its_runs_in_flight_and_gets_only_what_it_lacks() {
    let mut cluster = Cluster::new();
    let job = cluster.submit(&["a", "b"], None);
    cluster.leader_turn(false);
    let here = Sessions::of(&["a", "b", "idle"]);
    let effects = cluster.react(&here, false, Stimulus::SessionOpened { certname: "a" });
    assert_eq!(effects, vec![status_query("a", &["c-1-0-1"])]);
    assert!(
        cluster
            .react(&here, false, Stimulus::SessionOpened { certname: "idle" })
            .is_empty(),
        "an agent with nothing in flight is asked nothing"
    );
    // b reported meanwhile: its run is no longer in flight and is never re-sent.
    cluster.apply(Command::ReportRun {
        transaction_id: "c-1-1-1".into(),
        outcome: RunOutcome::Finished(RunResult::default()),
    });
    let lacking = ["c-1-0-1".to_string(), "c-1-1-1".to_string()];
    for (certname, expected) in [("a", vec![pair("a", "c-1-0-1")]), ("b", vec![])] {
        let effects = cluster.react(
            &here,
            false,
            Stimulus::AgentLacks {
                certname,
                transaction_ids: &lacking,
            },
        );
        assert_eq!(runs_sent(&effects), expected, "re-sent to {certname}");
    }
    assert_eq!(cluster.state.job(job).unwrap().runs_in_flight(), 1);
}

#[test]
fn after_a_snapshot_install_every_local_session_with_runs_in_flight_is_asked() {
    let mut cluster = Cluster::new();
    cluster.submit(&["a", "b", "c"], None);
    cluster.leader_turn(false);
    let here = Sessions::of(&["a", "c", "idle"]);
    let effects = cluster.react(&here, false, Stimulus::AppliedUnannounced);
    assert_eq!(
        effects,
        vec![
            status_query("a", &["c-1-0-1"]),
            status_query("c", &["c-1-2-1"])
        ]
    );
}

#[test]
fn runs_of_an_agent_unreachable_past_the_timeout_are_errored_by_the_leader() {
    let mut cluster = Cluster::new();
    let session = |certname: &str| (certname.to_string(), 1, "s1".to_string());
    for certname in ["a", "b"] {
        let (certname, via_node, session) = session(certname);
        cluster.apply(Command::AgentConnected {
            certname,
            via_node,
            session,
        });
    }
    let job = cluster.submit(&["a", "b"], None);
    cluster.leader_turn(false);
    let (certname, via_node, session) = session("a");
    cluster.apply(Command::AgentDisconnected {
        certname,
        via_node,
        session,
    });
    let disconnected_ms = cluster.now_ms;
    let here = Sessions::of(&[]);
    cluster.now_ms = disconnected_ms + TIMEOUT_MS - 1;
    assert!(
        cluster
            .react(&here, true, Stimulus::LeaderTurn { expiry_due: true })
            .is_empty(),
        "not yet"
    );
    cluster.now_ms = disconnected_ms + TIMEOUT_MS;
    assert!(
        cluster
            .react(&here, true, Stimulus::LeaderTurn { expiry_due: false })
            .is_empty(),
        "expiry waits for its turn"
    );
    assert!(
        cluster
            .react(&here, false, Stimulus::LeaderTurn { expiry_due: true })
            .is_empty(),
        "only the leader expires runs"
    );
    let outcomes = cluster.leader_turn(true);
    assert_eq!(
        outcomes,
        vec![Outcome::ReportAccepted {
            job_id: job,
            node: "a".into()
        }],
        "a's run is errored; b, still connected, keeps running"
    );
    let run = &cluster.state.job(job).unwrap().runs[0];
    assert_eq!(run.state, porch_core::NodeState::Errored);
}

#[test]
fn a_stopped_job_gets_no_more_starts() {
    let mut cluster = Cluster::new();
    let job = cluster.submit(&["a", "b", "c"], Some(1));
    cluster.leader_turn(false);
    assert_eq!(cluster.state.job(job).unwrap().runs_in_flight(), 1);
    cluster.apply(Command::StopJob { job_id: job });
    assert!(
        cluster
            .react(
                &Sessions::of(&[]),
                true,
                Stimulus::LeaderTurn { expiry_due: true }
            )
            .is_empty(),
        "stopping: nothing new starts"
    );
    cluster.apply(Command::ReportRun {
        transaction_id: "c-1-0-1".into(),
        outcome: RunOutcome::Finished(RunResult::default()),
    });
    assert_eq!(
        cluster.state.job(job).unwrap().state(),
        porch_core::JobState::Stopped
    );
    assert!(
        cluster.leader_turn(true).is_empty(),
        "stopped: nothing starts"
    );
}
