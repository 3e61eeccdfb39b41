//! The verdict on a recorded run: a pure function of the [`History`] and the agents' run log.
//! Each property is one check, so a test can hand it a history known to be wrong.
//!
//! - no acknowledged job is lost: every job acknowledged with 202 is held by the cluster, and
//!   every node answers it after healing;
//! - a submission applies once: the cluster holds no more jobs than request ids were sent;
//! - exactly once: a transaction runs at most once, a (job, node) at most once, every run the
//!   agents made is the one the cluster records for that node, and every node the cluster
//!   records `finished` ran to its end;
//! - order: a consumer starts only after each of its producers ended;
//! - convergence: after healing every job ended and every node caught up;
//! - no node exited unless the schedule killed it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::history::{History, RunEdge, RunLine};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    LostJob {
        job: u64,
        request_id: String,
        detail: String,
    },
    MoreJobsThanSubmissions {
        jobs: usize,
        submissions: usize,
    },
    TransactionRanTwice {
        transaction: String,
        starts: usize,
    },
    NodeRanTwice {
        job: u64,
        node: String,
        transactions: Vec<String>,
    },
    RunNotRecorded {
        job: u64,
        node: String,
        transaction: String,
        recorded: String,
    },
    FinishedWithoutRun {
        job: u64,
        node: String,
        transaction: String,
    },
    ConsumerBeforeProducer {
        job: u64,
        producer: String,
        consumer: String,
        detail: String,
    },
    NotEnded {
        job: u64,
        state: String,
    },
    NotConverged {
        detail: String,
    },
    NodeExited {
        detail: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LostJob {
                job,
                request_id,
                detail,
            } => {
                write!(
                    f,
                    "lost: job {job} (request {request_id}) was acknowledged but {detail}"
                )
            }
            Violation::MoreJobsThanSubmissions { jobs, submissions } => write!(
                f,
                "applied twice: the cluster holds {jobs} jobs from {submissions} request ids"
            ),
            Violation::TransactionRanTwice {
                transaction,
                starts,
            } => {
                write!(
                    f,
                    "exactly once: transaction {transaction} started {starts} times"
                )
            }
            Violation::NodeRanTwice {
                job,
                node,
                transactions,
            } => write!(
                f,
                "exactly once: job {job} ran on {node} more than once ({})",
                transactions.join(", ")
            ),
            Violation::RunNotRecorded {
                job,
                node,
                transaction,
                recorded,
            } => write!(
                f,
                "exactly once: {node} ran transaction {transaction} of job {job}, but the cluster records {recorded}"
            ),
            Violation::FinishedWithoutRun {
                job,
                node,
                transaction,
            } => write!(
                f,
                "exactly once: job {job} records {node} finished (transaction {transaction}), but the agent never completed that run"
            ),
            Violation::ConsumerBeforeProducer {
                job,
                producer,
                consumer,
                detail,
            } => write!(
                f,
                "order: in job {job}, consumer {consumer} started before producer {producer} ended ({detail})"
            ),
            Violation::NotEnded { job, state } => {
                write!(f, "liveness: job {job} is still {state} after healing")
            }
            Violation::NotConverged { detail } => {
                write!(
                    f,
                    "liveness: the cluster did not converge after healing: {detail}"
                )
            }
            Violation::NodeExited { detail } => write!(f, "crash: {detail}"),
        }
    }
}

/// Every violated property, in a stable order; empty when the run passed.
pub fn check(history: &History, runs: &[RunLine]) -> Vec<Violation> {
    let mut violations = Vec::new();
    violations.extend(lost_jobs(history));
    violations.extend(applied_twice(history));
    violations.extend(exactly_once(history, runs));
    violations.extend(order(history, runs));
    violations.extend(liveness(history));
    violations
}

fn lost_jobs(history: &History) -> Vec<Violation> {
    let mut violations = Vec::new();
    for submission in &history.submissions {
        let Some(job) = submission.acknowledged_job else {
            continue;
        };
        let lost = |detail: String| Violation::LostJob {
            job,
            request_id: submission.request_id.clone(),
            detail,
        };
        if !history.cluster_jobs.contains_key(&job) {
            violations.push(lost("the cluster does not hold it".into()));
        }
        for missing in history.missing.iter().filter(|m| m.job == job) {
            violations.push(lost(format!(
                "node {} answered {}",
                missing.node, missing.answer
            )));
        }
    }
    violations
}

fn applied_twice(history: &History) -> Option<Violation> {
    let submissions: BTreeSet<&str> = history
        .submissions
        .iter()
        .map(|s| s.request_id.as_str())
        .collect();
    (history.cluster_jobs.len() > submissions.len()).then_some(Violation::MoreJobsThanSubmissions {
        jobs: history.cluster_jobs.len(),
        submissions: submissions.len(),
    })
}

fn exactly_once(history: &History, runs: &[RunLine]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut starts_per_transaction: BTreeMap<&str, usize> = BTreeMap::new();
    let mut transactions_per_node: BTreeMap<(u64, &str), BTreeSet<&str>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.edge == RunEdge::Start) {
        *starts_per_transaction.entry(&run.transaction).or_default() += 1;
        transactions_per_node
            .entry((run.job, &run.node))
            .or_default()
            .insert(&run.transaction);
    }
    for (transaction, starts) in &starts_per_transaction {
        if *starts > 1 {
            violations.push(Violation::TransactionRanTwice {
                transaction: transaction.to_string(),
                starts: *starts,
            });
        }
    }
    for ((job, node), transactions) in &transactions_per_node {
        if transactions.len() > 1 {
            violations.push(Violation::NodeRanTwice {
                job: *job,
                node: node.to_string(),
                transactions: transactions.iter().map(|t| t.to_string()).collect(),
            });
        }
        for transaction in transactions {
            let recorded = history
                .cluster_jobs
                .get(job)
                .and_then(|j| j.runs.iter().find(|r| r.node == *node));
            let recorded_text = match recorded {
                None if history.cluster_jobs.contains_key(job) => "no such node in the job".into(),
                None => "no such job".to_string(),
                Some(run) => match &run.transaction {
                    Some(t) if t == transaction => continue,
                    Some(t) => format!("transaction {t} for it"),
                    None => format!("no transaction for it ({})", run.state),
                },
            };
            violations.push(Violation::RunNotRecorded {
                job: *job,
                node: node.to_string(),
                transaction: transaction.to_string(),
                recorded: recorded_text,
            });
        }
    }
    let ended: BTreeSet<&str> = runs
        .iter()
        .filter(|r| r.edge == RunEdge::End)
        .map(|r| r.transaction.as_str())
        .collect();
    for (job, cluster_job) in &history.cluster_jobs {
        for run in cluster_job.runs.iter().filter(|r| r.state == "finished") {
            let transaction = run.transaction.clone().unwrap_or_default();
            if !ended.contains(transaction.as_str()) {
                violations.push(Violation::FinishedWithoutRun {
                    job: *job,
                    node: run.node.clone(),
                    transaction,
                });
            }
        }
    }
    violations
}

fn order(history: &History, runs: &[RunLine]) -> Vec<Violation> {
    let time_of = |edge: RunEdge, job: u64, node: &str| {
        runs.iter()
            .filter(|r| r.edge == edge && r.job == job && r.node == node)
            .map(|r| r.time_ns)
            .min()
    };
    let mut violations = Vec::new();
    for submission in &history.submissions {
        let Some(job) = submission.acknowledged_job else {
            continue;
        };
        for (producer, consumer) in &submission.edges {
            let Some(consumer_start) = time_of(RunEdge::Start, job, consumer) else {
                continue;
            };
            let detail = match time_of(RunEdge::End, job, producer) {
                None => "the producer never ended".to_string(),
                Some(producer_end) if producer_end > consumer_start => format!(
                    "{:.3} s early",
                    (producer_end - consumer_start) as f64 / 1e9
                ),
                Some(_) => continue,
            };
            violations.push(Violation::ConsumerBeforeProducer {
                job,
                producer: producer.clone(),
                consumer: consumer.clone(),
                detail,
            });
        }
    }
    violations
}

fn liveness(history: &History) -> Vec<Violation> {
    let mut violations: Vec<Violation> = history
        .cluster_jobs
        .iter()
        .filter(|(_, job)| !matches!(job.state.as_str(), "finished" | "stopped" | "failed"))
        .map(|(id, job)| Violation::NotEnded {
            job: *id,
            state: job.state.clone(),
        })
        .collect();
    if let Some(detail) = &history.not_converged {
        violations.push(Violation::NotConverged {
            detail: detail.clone(),
        });
    }
    violations.extend(
        history
            .unexpected_exits
            .iter()
            .map(|detail| Violation::NodeExited {
                detail: detail.clone(),
            }),
    );
    violations
}

#[cfg(test)]
mod tests {
    use super::super::history::{ClusterJob, ClusterRun, Missing, Submission};
    use super::*;

    fn run(edge: RunEdge, node: &str, job: u64, transaction: &str, time_ns: u128) -> RunLine {
        RunLine {
            edge,
            node: node.into(),
            job,
            transaction: transaction.into(),
            time_ns,
        }
    }

    /// Job 1: db then app (application order), both finished, each run once.
    fn passing() -> (History, Vec<RunLine>) {
        let history = History {
            seed: 1,
            replay: String::new(),
            submissions: vec![Submission {
                request_id: "r1".into(),
                target: "application Lamp[prod]".into(),
                edges: vec![("db".into(), "app".into())],
                acknowledged_job: Some(1),
            }],
            cluster_jobs: BTreeMap::from([(
                1,
                ClusterJob {
                    state: "finished".into(),
                    runs: vec![
                        ClusterRun {
                            node: "db".into(),
                            state: "finished".into(),
                            transaction: Some("t-db".into()),
                        },
                        ClusterRun {
                            node: "app".into(),
                            state: "finished".into(),
                            transaction: Some("t-app".into()),
                        },
                    ],
                },
            )]),
            missing: vec![],
            not_converged: None,
            unexpected_exits: vec![],
        };
        let runs = vec![
            run(RunEdge::Start, "db", 1, "t-db", 100),
            run(RunEdge::End, "db", 1, "t-db", 200),
            run(RunEdge::Start, "app", 1, "t-app", 300),
            run(RunEdge::End, "app", 1, "t-app", 400),
        ];
        (history, runs)
    }

    #[test]
    fn a_correct_history_passes() {
        let (history, runs) = passing();
        assert_eq!(check(&history, &runs), vec![]);
    }

    #[test]
    fn an_acknowledged_job_the_cluster_lost_is_caught() {
        let (mut history, runs) = passing();
        history.cluster_jobs.clear();
        let violations = check(&history, &[]);
        assert!(
            matches!(violations.as_slice(), [Violation::LostJob { job: 1, .. }]),
            "{violations:?}"
        );
        // A node that answers 404 for it is caught as well, with the cluster holding it.
        let (mut history, _) = passing();
        history.missing.push(Missing {
            job: 1,
            node: 3,
            answer: "404".into(),
        });
        assert!(matches!(
            check(&history, &runs).as_slice(),
            [Violation::LostJob { .. }]
        ));
    }

    #[test]
    fn a_submission_applied_twice_is_caught() {
        let (mut history, runs) = passing();
        history.cluster_jobs.insert(
            2,
            ClusterJob {
                state: "finished".into(),
                runs: vec![],
            },
        );
        assert_eq!(
            check(&history, &runs),
            vec![Violation::MoreJobsThanSubmissions {
                jobs: 2,
                submissions: 1
            }]
        );
    }

    #[test]
    fn a_transaction_run_twice_is_caught() {
        let (history, mut runs) = passing();
        runs.push(run(RunEdge::Start, "app", 1, "t-app", 500));
        runs.push(run(RunEdge::End, "app", 1, "t-app", 600));
        assert_eq!(
            check(&history, &runs),
            vec![Violation::TransactionRanTwice {
                transaction: "t-app".into(),
                starts: 2
            }]
        );
    }

    #[test]
    fn a_node_run_under_two_transactions_is_caught() {
        let (history, mut runs) = passing();
        runs.push(run(RunEdge::Start, "app", 1, "t-app-2", 500));
        let violations = check(&history, &runs);
        assert!(
            violations
                .iter()
                .any(|v| matches!(v, Violation::NodeRanTwice { job: 1, .. })),
            "{violations:?}"
        );
        assert!(violations.iter().any(|v| matches!(v, Violation::RunNotRecorded { transaction, .. } if transaction == "t-app-2")));
    }

    #[test]
    fn a_run_of_a_job_the_cluster_does_not_hold_is_caught() {
        let (history, mut runs) = passing();
        runs.push(run(RunEdge::Start, "db", 9, "t-9", 500));
        assert!(matches!(
            check(&history, &runs).as_slice(),
            [Violation::RunNotRecorded { job: 9, recorded, .. }] if recorded == "no such job"
        ));
    }

    #[test]
    fn finished_without_a_completed_run_is_caught() {
        let (history, mut runs) = passing();
        runs.retain(|r| !(r.edge == RunEdge::End && r.transaction == "t-app"));
        assert!(matches!(
            check(&history, &runs).as_slice(),
            [Violation::FinishedWithoutRun { node, .. }] if node == "app"
        ));
    }

    #[test]
    fn a_consumer_started_before_its_producer_ended_is_caught() {
        let (history, mut runs) = passing();
        runs[2].time_ns = 150; // app starts while db runs
        assert!(matches!(
            check(&history, &runs).as_slice(),
            [Violation::ConsumerBeforeProducer { producer, consumer, .. }] if producer == "db" && consumer == "app"
        ));
        // A consumer that ran although its producer never ended.
        let (history, mut runs) = passing();
        runs.remove(1);
        let violations = check(&history, &runs);
        assert!(violations.iter().any(|v| matches!(v, Violation::ConsumerBeforeProducer { detail, .. } if detail.contains("never ended"))), "{violations:?}");
    }

    #[test]
    fn a_job_still_running_after_healing_and_a_lagging_node_are_caught() {
        let (mut history, runs) = passing();
        history.cluster_jobs.get_mut(&1).unwrap().state = "running".into();
        history.not_converged = Some("node 2 applied 40, node 1 applied 52".into());
        let violations = check(&history, &runs);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].to_string().contains("still running"));
        assert!(violations[1].to_string().contains("node 2 applied 40"));
    }
}
