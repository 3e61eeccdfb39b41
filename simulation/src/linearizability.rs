//! Linearizability of the job registry's history (Herlihy & Wing 1990): is there one order
//! of the operations, consistent with real time (an operation that returned before another
//! was invoked comes first), in which each return is what a sequential job registry would
//! have answered? Found by the Wing–Gong search with Lowe's memoisation (as Knossos and
//! Porcupine do): repeatedly linearize an operation that no unlinearized one must precede,
//! backtrack on a wrong answer, and never visit the same (set linearized, model state) twice.
//! An operation without an answer may take effect at any point after its invocation, or never.
//!
//! Linearizability is local (Herlihy & Wing's locality theorem): a history of a collection of
//! independent objects is linearizable iff each object's sub-history is. The registry is a
//! map from request ids to jobs, so the history is split by request — an operation on a job id
//! goes with the request some answer named for it — and each part is searched alone (what
//! Porcupine calls partitioning); the one rule across requests, one job id per request and one
//! request per job id, is checked over the whole history first.
//!
//! Written here rather than taken from a crate: the Rust ports of Porcupine found are
//! unmaintained or generic over a model trait as large as this file, and the model of a
//! job registry with request ids and jobs that end on their own is what matters.

use crate::history::{Call, Operation, Phase, Return};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// States the search may visit before it gives up (it has never come near with the
/// simulation's histories of a few dozen operations).
pub const STATES_MAX: usize = 2_000_000;

/// The sequential job registry: jobs keyed by the request id that created them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Model {
    /// request id → (job id once some answer named it, phase).
    jobs: BTreeMap<String, (Option<u64>, Phase)>,
    /// Request ids refused: they never create a job.
    refused: BTreeSet<String>,
}

impl Model {
    fn request_of(&self, job: u64) -> Option<&String> {
        self.jobs
            .iter()
            .find(|(_, (id, _))| *id == Some(job))
            .map(|(request, _)| request)
    }

    /// Binds `request`'s job to `job`, if that is consistent.
    fn bind(&mut self, request: &str, job: u64) -> bool {
        if self.request_of(job).is_some_and(|r| r != request) {
            return false; // one job id, two requests
        }
        match self.jobs.get_mut(request) {
            Some((Some(id), _)) => *id == job,
            Some((id @ None, _)) => {
                *id = Some(job);
                true
            }
            None => false,
        }
    }

    /// What a stop does to a job in `phase`: a job not yet ended is halted — or had ended on
    /// its own just before (a stop then changes nothing).
    fn stopped(&self, request: Option<String>) -> Vec<Model> {
        let Some(request) = request else {
            // A job no answer named yet: nothing to track.
            return vec![self.clone()];
        };
        let phase = self.jobs[&request].1;
        let phases = match phase {
            Phase::Active => vec![Phase::Halted, Phase::Ended],
            other => vec![other],
        };
        phases
            .into_iter()
            .map(|p| {
                let mut next = self.clone();
                if let Some(job) = next.jobs.get_mut(&request) {
                    job.1 = p;
                }
                next
            })
            .collect()
    }

    /// The states `call` can lead to if it answered `returned` (`None`: no answer seen).
    /// Empty: the answer is impossible here.
    fn step(&self, call: &Call, returned: Option<&Return>) -> Vec<Model> {
        match (call, returned) {
            (Call::Submit { request_id }, Some(Return::Submitted { job })) => {
                if self.refused.contains(request_id) {
                    return Vec::new();
                }
                let mut next = self.clone();
                next.jobs
                    .entry(request_id.clone())
                    .or_insert((None, Phase::Active));
                if next.bind(request_id, *job) {
                    vec![next]
                } else {
                    Vec::new()
                }
            }
            (Call::Submit { request_id }, Some(Return::Refused)) => {
                if self.jobs.contains_key(request_id) {
                    return Vec::new();
                }
                let mut next = self.clone();
                next.refused.insert(request_id.clone());
                vec![next]
            }
            (Call::Submit { request_id }, None) => {
                let mut next = self.clone();
                if !self.refused.contains(request_id) {
                    next.jobs
                        .entry(request_id.clone())
                        .or_insert((None, Phase::Active));
                }
                vec![next]
            }
            (Call::Stop { job }, Some(Return::Stopped) | None) => {
                self.stopped(self.request_of(*job).cloned())
            }
            (Call::Stop { job }, Some(Return::UnknownJob)) => {
                if self.request_of(*job).is_some() {
                    Vec::new()
                } else {
                    vec![self.clone()]
                }
            }
            (Call::Show { job }, Some(Return::NotFound)) => {
                if self.request_of(*job).is_some() {
                    Vec::new()
                } else {
                    vec![self.clone()]
                }
            }
            (Call::Show { job }, Some(Return::Found { request_id, phase })) => {
                let mut next = self.clone();
                if !next.jobs.contains_key(request_id) || !next.bind(request_id, *job) {
                    return Vec::new();
                }
                let known = next.jobs[request_id].1;
                let seen = match (known, *phase) {
                    (a, b) if a == b => b,
                    // Jobs end on their own at any time.
                    (Phase::Active, Phase::Ended) => Phase::Ended,
                    _ => return Vec::new(),
                };
                if let Some(entry) = next.jobs.get_mut(request_id) {
                    entry.1 = seen;
                }
                vec![next]
            }
            // A read that never answered changes nothing.
            (Call::Show { .. }, None) => vec![self.clone()],
            _ => Vec::new(), // an answer that does not fit the call
        }
    }
}

/// Ok if `history` is linearizable; otherwise why not.
pub fn check(history: &[Operation]) -> Result<(), String> {
    let request_of_job = bindings(history)?;
    let mut parts: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    // A read that never answered neither changes the registry nor tells anything: it could
    // be linearized anywhere or nowhere, and each one kept doubles the sets of operations the
    // search may visit (23 of them during a partition left it undecided after 2,000,000
    // states: standard scenario, seed 671).
    for op in history.iter().filter(|op| !is_unanswered_read(op)) {
        let request = match &op.call {
            Call::Submit { request_id } => Some(request_id.as_str()),
            Call::Stop { job } | Call::Show { job } => request_of_job.get(job).copied(),
        };
        // An operation on a job id no answer tied to a request can be explained by a job no
        // one was told about, or by none: it constrains nothing.
        if let Some(request) = request {
            parts.entry(request).or_default().push(op.clone());
        }
    }
    for (request, part) in parts {
        check_part(&part).map_err(|why| format!("{request}: {why}"))?;
    }
    Ok(())
}

fn is_unanswered_read(op: &Operation) -> bool {
    matches!(op.call, Call::Show { .. }) && op.returned.is_none()
}

/// Which request each job id belongs to, from every answer that tied the two; an error if an
/// answer ties a job id to two requests or a request to two job ids.
fn bindings(history: &[Operation]) -> Result<BTreeMap<u64, &str>, String> {
    let mut request_of_job: BTreeMap<u64, &str> = BTreeMap::new();
    let mut job_of_request: BTreeMap<&str, u64> = BTreeMap::new();
    for op in history {
        let (request, job) = match (&op.call, &op.returned) {
            (Call::Submit { request_id }, Some((_, Return::Submitted { job }))) => {
                (request_id.as_str(), *job)
            }
            (Call::Show { job }, Some((_, Return::Found { request_id, .. }))) => {
                (request_id.as_str(), *job)
            }
            _ => continue,
        };
        if let Some(other) = request_of_job
            .insert(job, request)
            .filter(|r| *r != request)
        {
            return Err(format!(
                "job {job} was named for both {other} and {request} ({})",
                describe(op)
            ));
        }
        if let Some(other) = job_of_request.insert(request, job).filter(|j| *j != job) {
            return Err(format!(
                "{request} was answered as job {other} and as job {job} ({})",
                describe(op)
            ));
        }
    }
    Ok(request_of_job)
}

/// The Wing–Gong search over the operations of one request.
fn check_part(history: &[Operation]) -> Result<(), String> {
    let n = history.len();
    let completed: Vec<bool> = history.iter().map(|op| op.returned.is_some()).collect();
    let returned_ms = |i: usize| history[i].returned.as_ref().map_or(u64::MAX, |(t, _)| *t);
    let mut seen: HashSet<(Vec<bool>, Model)> = HashSet::new();
    // Depth-first: (linearized so far, model, order taken).
    let mut stack: Vec<(Vec<bool>, Model, Vec<usize>)> =
        vec![(vec![false; n], Model::default(), Vec::new())];
    let mut longest: Vec<usize> = Vec::new();
    while let Some((done, model, order)) = stack.pop() {
        if (0..n).all(|i| done[i] || !completed[i]) {
            return Ok(());
        }
        if order.len() > longest.len() {
            longest = order.clone();
        }
        // An operation may go next only if no other unlinearized one returned before it was
        // invoked (that one must come first).
        let earliest_return = (0..n)
            .filter(|&i| !done[i])
            .map(returned_ms)
            .min()
            .unwrap_or(u64::MAX);
        // (Equal times count as concurrent: milliseconds cannot order them.)
        for i in (0..n).filter(|&i| !done[i]) {
            if history[i].invoked_ms > earliest_return {
                continue;
            }
            let returned = history[i].returned.as_ref().map(|(_, r)| r);
            for next in model.step(&history[i].call, returned) {
                let mut next_done = done.clone();
                next_done[i] = true;
                if seen.insert((next_done.clone(), next.clone())) {
                    if seen.len() > STATES_MAX {
                        return Err(format!(
                            "undecided: the search passed {STATES_MAX} states ({n} operations)"
                        ));
                    }
                    let mut next_order = order.clone();
                    next_order.push(i);
                    stack.push((next_done, next, next_order));
                }
            }
        }
    }
    let prefix: Vec<String> = longest.iter().map(|&i| describe(&history[i])).collect();
    let stuck: Vec<String> = (0..n)
        .filter(|i| !longest.contains(i) && completed[*i])
        .take(5)
        .map(|i| describe(&history[i]))
        .collect();
    Err(format!(
        "no order of the {n} operations explains every answer; the longest consistent prefix ({} operations) ends [{}], and none of [{}] can follow it",
        longest.len(),
        prefix[prefix.len().saturating_sub(3)..].join("; "),
        stuck.join("; ")
    ))
}

fn describe(op: &Operation) -> String {
    let answer = match &op.returned {
        Some((at, value)) => format!("{value:?} at {at} ms"),
        None => "no answer".into(),
    };
    format!("{:?} invoked at {} ms → {answer}", op.call, op.invoked_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(request: &str, from: u64, to: u64, job: u64) -> Operation {
        Operation {
            call: Call::Submit {
                request_id: request.into(),
            },
            invoked_ms: from,
            returned: Some((to, Return::Submitted { job })),
        }
    }

    fn pending_submit(request: &str, from: u64) -> Operation {
        Operation {
            call: Call::Submit {
                request_id: request.into(),
            },
            invoked_ms: from,
            returned: None,
        }
    }

    fn show(job: u64, from: u64, to: u64, value: Return) -> Operation {
        Operation {
            call: Call::Show { job },
            invoked_ms: from,
            returned: Some((to, value)),
        }
    }

    fn found(request: &str, phase: Phase) -> Return {
        Return::Found {
            request_id: request.into(),
            phase,
        }
    }

    fn stop(job: u64, from: u64, to: u64) -> Operation {
        Operation {
            call: Call::Stop { job },
            invoked_ms: from,
            returned: Some((to, Return::Stopped)),
        }
    }

    #[test]
    fn a_read_after_an_acknowledged_submission_that_misses_it_is_caught() {
        let history = [submit("a", 0, 10, 1), show(1, 20, 30, Return::NotFound)];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_read_concurrent_with_a_submission_may_miss_it() {
        let history = [submit("a", 0, 30, 1), show(1, 10, 20, Return::NotFound)];
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn a_submission_applied_twice_is_caught() {
        // The same request id acknowledged as two jobs (the retry was not deduplicated).
        let history = [submit("a", 0, 10, 1), submit("a", 20, 30, 2)];
        assert!(check(&history).is_err());
    }

    #[test]
    fn one_job_id_for_two_requests_is_caught() {
        let history = [submit("a", 0, 10, 1), submit("b", 20, 30, 1)];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_submission_without_an_answer_may_have_taken_effect() {
        let history = [
            pending_submit("a", 0),
            show(7, 50, 60, found("a", Phase::Active)),
            show(7, 70, 80, found("a", Phase::Ended)),
        ];
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn a_job_found_under_another_request_than_acknowledged_is_caught() {
        let history = [
            submit("a", 0, 10, 1),
            submit("b", 0, 10, 2),
            show(1, 20, 30, found("b", Phase::Active)),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_halted_job_nobody_stopped_is_caught() {
        let history = [
            submit("a", 0, 10, 1),
            show(1, 20, 30, found("a", Phase::Halted)),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn an_ended_job_seen_active_again_is_caught() {
        let history = [
            submit("a", 0, 10, 1),
            show(1, 20, 30, found("a", Phase::Ended)),
            show(1, 40, 50, found("a", Phase::Active)),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn an_acknowledged_stop_must_be_visible_to_later_reads() {
        let stopped_then_active = [
            submit("a", 0, 10, 1),
            stop(1, 20, 30),
            show(1, 40, 50, found("a", Phase::Active)),
        ];
        assert!(check(&stopped_then_active).is_err());
        // A job that ended before the stop stays ended; one stopped shows halted.
        for phase in [Phase::Ended, Phase::Halted] {
            let history = [
                submit("a", 0, 10, 1),
                stop(1, 20, 30),
                show(1, 40, 50, found("a", phase)),
            ];
            assert_eq!(check(&history), Ok(()), "{phase:?}");
        }
    }

    #[test]
    fn a_refused_request_never_creates_a_job() {
        let refused = Operation {
            call: Call::Submit {
                request_id: "v".into(),
            },
            invoked_ms: 0,
            returned: Some((10, Return::Refused)),
        };
        assert_eq!(check(std::slice::from_ref(&refused)), Ok(()));
        let history = [refused, show(3, 20, 30, found("v", Phase::Active))];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_refused_submission_that_also_created_a_job_is_caught() {
        let history = [
            Operation {
                call: Call::Submit {
                    request_id: "a".into(),
                },
                invoked_ms: 0,
                returned: Some((10, Return::Refused)),
            },
            show(1, 20, 30, found("a", Phase::Active)),
        ];
        assert!(check(&history).unwrap_err().starts_with("a: "));
    }

    #[test]
    fn unanswered_reads_during_a_long_partition_leave_the_search_decided() {
        let mut history: Vec<Operation> = (0..40)
            .map(|i| Operation {
                call: Call::Show { job: 1 },
                invoked_ms: 100 + i * 10,
                returned: None,
            })
            .collect();
        history.push(show(1, 500, 600, Return::NotFound));
        history.push(submit("r1", 700, 800, 1));
        assert_eq!(check(&history), Ok(()));
        // The answered reads still count: one that found the job before it was submitted
        // cannot be explained.
        history.push(show(1, 10, 20, found("r1", Phase::Active)));
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_long_history_of_overlapping_operations_is_decided() {
        // 1,000 submissions, each overlapping its neighbours, a read of each overlapping the
        // next submission, and a few submissions that never answered.
        let mut history = Vec::new();
        for i in 0..1000u64 {
            let request = format!("r{i}");
            if i % 50 == 7 {
                history.push(pending_submit(&request, 10 * i));
                continue;
            }
            history.push(submit(&request, 10 * i, 10 * i + 15, i + 1));
            history.push(show(
                i + 1,
                10 * i + 5,
                10 * i + 25,
                found(&request, Phase::Active),
            ));
        }
        assert_eq!(check(&history), Ok(()));
        history.push(show(5, 50_000, 50_010, Return::NotFound));
        assert!(check(&history).is_err());
    }
}
