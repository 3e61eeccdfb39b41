//! Scheduled jobs: a deploy that runs from a start time, once or every N seconds, with its
//! creator's rights (PE's `/scheduled_jobs/environment_jobs`).
//!
//! Occurrence `n` (from 1) of a schedule is due at `start_ms + (n - 1) * interval_ms`. The leader
//! fires occurrences by committing [`Firing`]s; `apply` (in `apply.rs`) accepts an occurrence
//! only if it is the schedule's next one, so an occurrence fires at most once whatever the
//! leaders do — a new leader proposing one again is refused — and decides, against the
//! leader-stamped time of the entry, what missed occurrences, overlap and lost rights mean.
//! Every occurrence ends in exactly one [`OccurrenceRecord`]: fired (one job), or skipped with
//! the reason, or the schedule stopped.

mod apply;
#[cfg(test)]
mod tests;

pub use apply::{FiringResult, fired_job};

use crate::access::Actor;
use crate::ids::JobId;
use crate::job::JobSpec;
use crate::plan::Plan;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Schedules kept at most (active, stopped and completed); creating one more is refused.
pub const SCHEDULES_MAX: usize = 100_000;
/// Occurrence records kept per schedule, newest last.
pub const HISTORY_PER_SCHEDULE_MAX: usize = 50;
/// Links from jobs back to the schedule occurrence that created them; the oldest jobs' links
/// go first beyond it (as many as the jobs retention keeps by default).
pub const JOB_LINKS_MAX: usize = 100_000;
/// Longest interval: ten years.
pub const INTERVAL_MS_MAX: u64 = 10 * 366 * 24 * 3600 * 1000;
/// With the skip policy, the latest due occurrence still fires when it is at most this late
/// (a leader change takes a few seconds); later than this it counts as missed and is skipped.
pub const SKIP_LATER_THAN_MS: u64 = 10_000;
/// Longest `userdata` kept (a JSON object, as text).
pub const USERDATA_BYTES_MAX: usize = 4096;

/// A schedule's id: from a counter in the state, like job ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScheduleId(pub u64);

impl std::fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What each occurrence runs: a Puppet run (as `POST /command/deploy` describes it) or a task
/// (as `POST /command/task` does, `spec.task` set). Planned anew at each occurrence; a task's
/// file and parameters are checked again too, so an occurrence runs the code of its time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledWork {
    pub spec: JobSpec,
}

impl ScheduledWork {
    /// PE's `type` of the scheduled job.
    pub fn type_name(&self) -> &'static str {
        match self.spec.task {
            Some(_) => "task",
            None => "deploy",
        }
    }

    pub fn environment(&self) -> &str {
        &self.spec.environment
    }
}

/// What happens to occurrences that fell due while no leader could fire them (no quorum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// All the occurrences missed fire as one job when the cluster is back, never more.
    FireOnce,
    /// Missed occurrences are skipped (recorded); the schedule goes on with the next one due.
    Skip,
}

impl MissedPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MissedPolicy::FireOnce => "fire_once",
            MissedPolicy::Skip => "skip",
        }
    }
}

/// A schedule as a creation command carries it (the owner comes from the token, in `apply`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSchedule {
    pub work: ScheduledWork,
    pub start_ms: u64,
    /// `None`: one occurrence only.
    pub interval_ms: Option<u64>,
    pub missed: MissedPolicy,
    pub description: Option<String>,
    /// PE's `userdata`: a JSON object as text, kept and shown, never interpreted.
    pub userdata: Option<String>,
}

/// Why a range of occurrences did not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The job of the previous occurrence had not ended: runs of a schedule never overlap.
    Overlap { running_job: JobId },
    /// Fell due while no leader could fire it, and the schedule skips missed occurrences.
    Missed,
    /// The leader could not plan the job (target resolved to nothing, code unreadable...).
    PlanFailed { message: String },
}

/// Why a schedule fires no more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleEnd {
    /// A one-off schedule's occurrence was decided.
    Completed,
    /// Its owner no longer exists.
    OwnerRemoved,
    /// Its owner's rights no longer allow the job.
    PermissionLost {
        refusal: crate::access::AccessRefusal,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceOutcome {
    /// One job ran for the whole range (several occurrences only when missed ones fire once).
    Fired {
        job_id: JobId,
    },
    Skipped(SkipReason),
    /// The schedule stopped at this occurrence.
    Ended(ScheduleEnd),
}

/// The decision on occurrences `first..=last` (one occurrence unless missed ones were
/// coalesced or skipped together), taken at the leader-stamped `decided_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccurrenceRecord {
    pub first: u64,
    pub last: u64,
    pub decided_ms: u64,
    pub outcome: OccurrenceOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: ScheduleId,
    pub work: ScheduledWork,
    pub start_ms: u64,
    pub interval_ms: Option<u64>,
    pub missed: MissedPolicy,
    pub description: Option<String>,
    pub userdata: Option<String>,
    pub owner: Actor,
    pub created_ms: u64,
    /// The only occurrence `apply` accepts next: every lower one has been decided.
    pub next_occurrence: u64,
    /// The job of the latest fired occurrence: the next one is skipped while it runs.
    pub last_job: Option<JobId>,
    pub ended: Option<ScheduleEnd>,
    /// Decisions, newest last, at most [`HISTORY_PER_SCHEDULE_MAX`].
    pub history: VecDeque<OccurrenceRecord>,
    /// Occurrences decided so far, by outcome (history keeps only the newest).
    pub fired_total: u64,
    pub skipped_total: u64,
}

impl Schedule {
    /// When occurrence `n` (from 1) is due.
    pub fn due_ms(&self, occurrence: u64) -> u64 {
        let steps = occurrence.saturating_sub(1);
        match self.interval_ms {
            Some(interval) => self.start_ms.saturating_add(steps.saturating_mul(interval)),
            None => self.start_ms,
        }
    }

    /// The highest occurrence due at `now_ms` (0: none yet).
    pub fn latest_due(&self, now_ms: u64) -> u64 {
        if now_ms < self.start_ms {
            return 0;
        }
        match self.interval_ms {
            Some(interval) if interval > 0 => (now_ms - self.start_ms) / interval + 1,
            _ => 1,
        }
    }

    /// When the next occurrence is due, unless the schedule fires no more.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.ended
            .is_none()
            .then(|| self.due_ms(self.next_occurrence))
    }

    pub fn is_active(&self) -> bool {
        self.ended.is_none()
    }

    /// The latest fired occurrence: (occurrence, decided at, job).
    pub fn last_fired(&self) -> Option<(u64, u64, JobId)> {
        self.history.iter().rev().find_map(|r| match r.outcome {
            OccurrenceOutcome::Fired { job_id } => Some((r.last, r.decided_ms, job_id)),
            _ => None,
        })
    }
}

/// The leader's decision to fire `occurrence` of `schedule_id`, with the job's plan (resolved
/// by the leader, as for a submission) or why it could not be planned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub schedule_id: ScheduleId,
    pub occurrence: u64,
    pub plan: Result<Plan, String>,
    /// A task schedule's task as the leader checked it again for this occurrence (its file's
    /// hash today, its parameters against today's metadata); `None` for a deploy.
    pub task: Option<crate::task::TaskInvocation>,
}

/// Which schedule occurrence created a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOrigin {
    pub schedule_id: ScheduleId,
    /// The last occurrence the job stands for (missed occurrences may fire as one).
    pub occurrence: u64,
}

/// Every schedule, an index of the active ones by due time, and the jobs they created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredSchedules")]
pub struct Schedules {
    next_id: u64,
    schedules: OrdMap<ScheduleId, Schedule>,
    job_links: BTreeMap<JobId, JobOrigin>,
    /// (next due ms, id) of every active schedule: what the leader's loop looks at. Derived
    /// from `schedules`, rebuilt when a snapshot is decoded.
    #[serde(skip)]
    due: BTreeSet<(u64, ScheduleId)>,
}

/// `Schedules` as snapshots store it (bincode is positional: same order, no derived index).
#[derive(Deserialize)]
struct StoredSchedules {
    next_id: u64,
    schedules: OrdMap<ScheduleId, Schedule>,
    job_links: BTreeMap<JobId, JobOrigin>,
}

impl From<StoredSchedules> for Schedules {
    fn from(stored: StoredSchedules) -> Schedules {
        let due = stored
            .schedules
            .values()
            .filter_map(|s| s.next_due_ms().map(|due| (due, s.id)))
            .collect();
        Schedules {
            next_id: stored.next_id,
            schedules: stored.schedules,
            job_links: stored.job_links,
            due,
        }
    }
}

impl Schedules {
    pub fn get(&self, id: ScheduleId) -> Option<&Schedule> {
        self.schedules.get(&id)
    }

    pub fn all(&self) -> &OrdMap<ScheduleId, Schedule> {
        &self.schedules
    }

    pub fn len(&self) -> usize {
        self.schedules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty()
    }

    /// The schedule occurrence that created `job`, if a schedule did.
    pub fn job_origin(&self, job: JobId) -> Option<JobOrigin> {
        self.job_links.get(&job).copied()
    }

    pub fn job_links(&self) -> &BTreeMap<JobId, JobOrigin> {
        &self.job_links
    }

    /// The occurrences due at `now_ms` that the leader should fire: each active schedule's
    /// next occurrence whose time has come, earliest first, at most `max`.
    pub fn due_firings(&self, now_ms: u64, max: usize) -> Vec<(ScheduleId, u64)> {
        self.due
            .range(..=(now_ms, ScheduleId(u64::MAX)))
            .filter(|(due_ms, _)| {
                // Planted bug: an occurrence more than 2 s late is never fired nor skipped.
                !(crate::planted::active(crate::planted::Bug::ScheduleLateOccurrenceLost)
                    && due_ms + 2_000 < now_ms)
            })
            .take(max)
            .filter_map(|&(_, id)| self.schedules.get(&id).map(|s| (id, s.next_occurrence)))
            .collect()
    }

    /// The earliest time an active schedule is due, for the leader's loop to sleep until.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.due.first().map(|&(due, _)| due)
    }

    /// Replaces `id`'s entry in the due index after its schedule changed.
    fn reindex(&mut self, id: ScheduleId, before: Option<u64>) {
        if let Some(due) = before {
            self.due.remove(&(due, id));
        }
        if let Some(due) = self.schedules.get(&id).and_then(Schedule::next_due_ms) {
            self.due.insert((due, id));
        }
    }

    fn link_job(&mut self, job: JobId, origin: JobOrigin) {
        self.job_links.insert(job, origin);
        while self.job_links.len() > JOB_LINKS_MAX {
            self.job_links.pop_first();
        }
    }
}

/// Why a schedule's start or interval cannot be accepted at `now_ms` (the API answers it
/// early against its own clock; `apply` decides against the leader's).
pub fn timing_refusal(start_ms: u64, interval_ms: Option<u64>, now_ms: u64) -> Option<String> {
    if start_ms < now_ms {
        return Some(format!(
            "'schedule.start_time' is {} ms in the past",
            now_ms - start_ms
        ));
    }
    match interval_ms {
        Some(0) => Some("'schedule.interval.value' must be a positive number of seconds".into()),
        Some(interval) if interval > INTERVAL_MS_MAX => Some(format!(
            "'schedule.interval.value' is longer than {} seconds",
            INTERVAL_MS_MAX / 1000
        )),
        _ => None,
    }
}
