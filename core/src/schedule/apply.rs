//! How `apply` creates, deletes and fires schedules. Firing is where exactly-once lives: an
//! occurrence is accepted only if it is the schedule's next one, and deciding it (fire, skip
//! or stop) moves the schedule past it in the same entry, so no leader can fire it again.

use super::{
    Firing, JobOrigin, MissedPolicy, NewSchedule, OccurrenceOutcome, OccurrenceRecord, Schedule,
    ScheduleEnd, ScheduleId, ScheduledWork, SkipReason,
};
use crate::access::Actor;
use crate::access::permission::Action;
use crate::command::{Outcome, Rejection};
use crate::ids::JobId;
use crate::plan::Plan;
use crate::state::ClusterState;
use std::collections::VecDeque;

/// What became of one proposed firing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FiringResult {
    Decided {
        first: u64,
        last: u64,
        outcome: OccurrenceOutcome,
    },
    /// Not the schedule's next occurrence, not due yet, or the schedule is gone or ended.
    Refused { reason: String },
}

impl ClusterState {
    /// `owner` is the creator (from the token); `nodes` the plan's nodes at creation, which
    /// `apply_on_behalf` authorised already.
    pub(crate) fn create_schedule(&mut self, new: NewSchedule, owner: Actor) -> Outcome {
        let since = crate::format_version::SCHEDULES_SINCE;
        if self.format_version < since {
            return Outcome::Rejected(Rejection::Invalid(format!(
                "scheduled jobs need format version {since}, and the cluster still writes {}: \
                 finish the rolling upgrade (every member on a porch that reads {since}) first",
                self.format_version
            )));
        }
        let now = self.clock_ms;
        if let Some(why) = super::timing_refusal(new.start_ms, new.interval_ms, now) {
            return Outcome::Rejected(Rejection::Invalid(why));
        }
        if self.schedules.len() >= super::SCHEDULES_MAX {
            return Outcome::Rejected(Rejection::Invalid(format!(
                "the cluster holds {} schedules, the most it keeps; delete some first",
                super::SCHEDULES_MAX
            )));
        }
        if new
            .userdata
            .as_ref()
            .is_some_and(|u| u.len() > super::USERDATA_BYTES_MAX)
        {
            return Outcome::Rejected(Rejection::Invalid(format!(
                "'userdata' is longer than {} bytes",
                super::USERDATA_BYTES_MAX
            )));
        }
        let id = ScheduleId(self.schedules.next_id.max(1));
        self.schedules.next_id = id.0 + 1;
        let mut work = new.work;
        work.spec.owner = owner.clone();
        let schedule = Schedule {
            id,
            work,
            start_ms: new.start_ms,
            interval_ms: new.interval_ms,
            missed: new.missed,
            description: new.description,
            userdata: new.userdata,
            owner,
            created_ms: now,
            next_occurrence: 1,
            last_job: None,
            ended: None,
            history: VecDeque::new(),
            fired_total: 0,
            skipped_total: 0,
        };
        self.schedules.schedules.insert(id, schedule);
        self.schedules.reindex(id, None);
        Outcome::ScheduleCreated { schedule_id: id }
    }

    pub(crate) fn delete_schedule(&mut self, id: ScheduleId) -> Outcome {
        let Some(schedule) = self.schedules.schedules.remove(&id) else {
            return Outcome::Rejected(Rejection::UnknownSchedule(id));
        };
        if let Some(due) = schedule.next_due_ms() {
            self.schedules.due.remove(&(due, id));
        }
        Outcome::ScheduleDeleted { schedule_id: id }
    }

    pub(crate) fn fire_schedules(&mut self, firings: Vec<Firing>) -> Outcome {
        if self.cluster_id().is_none() {
            return Outcome::Rejected(Rejection::ClusterIdNotSet);
        }
        let results = firings.into_iter().map(|f| self.fire(f)).collect();
        Outcome::SchedulesFired { results }
    }

    fn fire(&mut self, firing: Firing) -> FiringResult {
        let now = self.clock_ms;
        let refused = |reason: &str| FiringResult::Refused {
            reason: reason.to_string(),
        };
        let Some(schedule) = self.schedules.get(firing.schedule_id) else {
            return refused("unknown schedule");
        };
        if !schedule.is_active() {
            return refused("the schedule has ended");
        }
        if firing.occurrence + 1 == schedule.next_occurrence
            && crate::planted::active(crate::planted::Bug::ScheduleRefireLast)
        {
            return self.planted_refire(firing);
        }
        if firing.occurrence != schedule.next_occurrence {
            return refused("not the schedule's next occurrence");
        }
        if schedule.due_ms(firing.occurrence) > now {
            return refused("not due yet");
        }
        let first = firing.occurrence;
        let latest = schedule.latest_due(now).max(first);
        let late_ms = now - schedule.due_ms(latest);
        let (missed_range, fire_range) = match schedule.missed {
            // Everything due fires as one job (the missed ones and the latest).
            MissedPolicy::FireOnce => (None, Some((first, latest))),
            MissedPolicy::Skip if late_ms > super::SKIP_LATER_THAN_MS => {
                (Some((first, latest)), None)
            }
            MissedPolicy::Skip if latest > first => {
                (Some((first, latest - 1)), Some((latest, latest)))
            }
            MissedPolicy::Skip => (None, Some((first, latest))),
        };
        let id = firing.schedule_id;
        if let Some((from, to)) = missed_range {
            self.record(id, from, to, OccurrenceOutcome::Skipped(SkipReason::Missed));
        }
        let Some((from, to)) = fire_range else {
            return self.decided(id, first, latest);
        };
        let outcome = self.fire_range(id, firing.plan, firing.task);
        self.record(id, from, to, outcome);
        self.decided(id, first, latest)
    }

    /// The decision on one range of occurrences whose time has come: stop (the owner lost
    /// the right), skip (overlap, no plan) or run a job.
    fn fire_range(
        &mut self,
        id: ScheduleId,
        plan: Result<Plan, String>,
        task: Option<crate::task::TaskInvocation>,
    ) -> OccurrenceOutcome {
        let schedule = &self.schedules.schedules[&id];
        let spec = occurrence_spec(&schedule.work, task);
        let Some(owner) = self.access.user(&schedule.owner.id).cloned() else {
            return OccurrenceOutcome::Ended(ScheduleEnd::OwnerRemoved);
        };
        if let Some(running) = schedule
            .last_job
            .filter(|job| self.job(*job).is_some_and(|j| !j.state().is_terminal()))
            && !crate::planted::active(crate::planted::Bug::ScheduleOverlapUnchecked)
        {
            return OccurrenceOutcome::Skipped(SkipReason::Overlap {
                running_job: running,
            });
        }
        let (plan, spec) = match (plan, spec) {
            (Ok(plan), Ok(spec)) => (plan, spec),
            (Err(message), _) | (_, Err(message)) => {
                return OccurrenceOutcome::Skipped(SkipReason::PlanFailed { message });
            }
        };
        let nodes: Vec<&str> = plan.nodes().iter().map(|n| n.name.as_str()).collect();
        if let Err(refusal) = self
            .access
            .authorize(&owner, &Action::for_job(&spec, &nodes))
        {
            return OccurrenceOutcome::Ended(ScheduleEnd::PermissionLost { refusal });
        }
        let job_id = self.submit_scheduled_job(id, spec, plan);
        OccurrenceOutcome::Fired { job_id }
    }

    /// Moves the schedule past `first..=last` once they are all decided.
    fn decided(&mut self, id: ScheduleId, first: u64, last: u64) -> FiringResult {
        let outcome = self.schedules.schedules[&id]
            .history
            .back()
            .map(|r| r.outcome.clone())
            .expect("a decision was just recorded");
        FiringResult::Decided {
            first,
            last,
            outcome,
        }
    }

    /// Records the decision on `first..=last` and moves the schedule past `last`.
    fn record(&mut self, id: ScheduleId, first: u64, last: u64, outcome: OccurrenceOutcome) {
        let now = self.clock_ms;
        let before = self.schedules.schedules[&id].next_due_ms();
        if let OccurrenceOutcome::Fired { job_id } = outcome {
            self.schedules.link_job(
                job_id,
                JobOrigin {
                    schedule_id: id,
                    occurrence: last,
                },
            );
        }
        let schedule = self
            .schedules
            .schedules
            .get_mut(&id)
            .expect("caller checked the schedule exists");
        schedule.next_occurrence = schedule.next_occurrence.max(last + 1);
        match &outcome {
            OccurrenceOutcome::Fired { job_id } => {
                schedule.last_job = Some(*job_id);
                schedule.fired_total += 1;
            }
            OccurrenceOutcome::Skipped(_) => schedule.skipped_total += last - first + 1,
            OccurrenceOutcome::Ended(end) => schedule.ended = Some(end.clone()),
        }
        if schedule.interval_ms.is_none() && schedule.ended.is_none() {
            schedule.ended = Some(ScheduleEnd::Completed);
        }
        schedule.history.push_back(OccurrenceRecord {
            first,
            last,
            decided_ms: now,
            outcome,
        });
        while schedule.history.len() > super::HISTORY_PER_SCHEDULE_MAX {
            schedule.history.pop_front();
        }
        self.schedules.reindex(id, before);
    }

    /// A job for a schedule occurrence: submitted like any job, its runs started by the
    /// scheduler loop; audited as a run by the schedule's owner.
    fn submit_scheduled_job(
        &mut self,
        id: ScheduleId,
        spec: crate::job::JobSpec,
        plan: Plan,
    ) -> JobId {
        let owner = spec.owner.clone();
        let job_id = match self.submit_job(spec, plan, None) {
            Outcome::JobSubmitted { job_id, .. } => job_id,
            other => unreachable!("a submission without a cap always creates a job: {other:?}"),
        };
        self.audit.record(
            crate::audit::AuditRecord {
                actor: Some(owner),
                source: format!("schedule {id}"),
                action: crate::audit::AuditAction::JobRun,
                target: job_id.to_string(),
                result: crate::audit::AuditResult::Ok,
            },
            self.clock_ms,
        );
        job_id
    }

    /// Planted bug: the occurrence before the next one fires again as a new job.
    fn planted_refire(&mut self, firing: Firing) -> FiringResult {
        let id = firing.schedule_id;
        let Ok(spec) = occurrence_spec(&self.schedules.schedules[&id].work, firing.task) else {
            return FiringResult::Refused {
                reason: "no task".into(),
            };
        };
        let Ok(plan) = firing.plan else {
            return FiringResult::Refused {
                reason: "no plan".into(),
            };
        };
        let job_id = self.submit_scheduled_job(id, spec, plan);
        self.schedules.link_job(
            job_id,
            JobOrigin {
                schedule_id: id,
                occurrence: firing.occurrence,
            },
        );
        FiringResult::Decided {
            first: firing.occurrence,
            last: firing.occurrence,
            outcome: OccurrenceOutcome::Fired { job_id },
        }
    }
}

/// The job an occurrence runs: the schedule's, with a task schedule's task as the leader
/// checked it for this occurrence — which must be the same task.
fn occurrence_spec(
    work: &ScheduledWork,
    task: Option<crate::task::TaskInvocation>,
) -> Result<crate::job::JobSpec, String> {
    let mut spec = work.spec.clone();
    match (&work.spec.task, task) {
        (None, None) => {}
        (Some(scheduled), Some(checked)) if checked.name == scheduled.name => {
            spec.task = Some(checked);
        }
        (Some(scheduled), _) => {
            return Err(format!(
                "the leader did not check task {} for this occurrence",
                scheduled.name
            ));
        }
        (None, Some(checked)) => {
            return Err(format!(
                "a deploy schedule cannot run task {}",
                checked.name
            ));
        }
    }
    Ok(spec)
}

/// The job id a firing created, for callers that only want that.
pub fn fired_job(result: &FiringResult) -> Option<JobId> {
    match result {
        FiringResult::Decided {
            outcome: OccurrenceOutcome::Fired { job_id },
            ..
        } => Some(*job_id),
        _ => None,
    }
}
