//! The leader's schedule firing loop: sleeps until the earliest active schedule is due (or the
//! applied state changes: a schedule created or deleted), plans each due occurrence's job as a
//! submission would be planned, and commits the firings in one entry. It only proposes:
//! `apply` decides, and refuses any occurrence that is not a schedule's next one, so a loop on
//! a deposed leader, or two leaders in turn, can never fire an occurrence twice.

use crate::consensus::Consensus;
use crate::puppetdb::PuppetDb;
use porch_core::schedule::{Firing, ScheduledWork};
use porch_core::{Command, Outcome};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Longest the loop sleeps without looking (a follower waits for a change of role instead).
const IDLE: Duration = Duration::from_secs(1);
/// Shortest the loop sleeps when nothing can be fired: an occurrence the index calls due but
/// that cannot be fired now must cost a look every few ticks, never a spin that starves the
/// runtime (and, in the simulation, stops virtual time).
const LOOK_AGAIN_MIN: Duration = Duration::from_millis(50);
/// Firings committed in one entry at most; more due wait for the next round.
const FIRINGS_PER_ENTRY_MAX: usize = 500;

/// Where the loop plans jobs from: the same code directory and PuppetDB as the API.
pub struct Planning {
    pub codedir: PathBuf,
    pub puppetdb: Option<Arc<PuppetDb>>,
}

pub async fn run(consensus: Arc<Consensus>, planning: Planning) {
    let mut applied = consensus.view.applied_index();
    let mut roles = consensus.role_changes();
    let mut was_leader = false;
    loop {
        if !consensus.is_leader() {
            was_leader = false;
            roles.next(IDLE).await;
            applied.borrow_and_update();
            continue;
        }
        if !was_leader {
            was_leader = true;
            if porch_core::planted::active(porch_core::planted::Bug::ScheduleRefireLast) {
                planted_refire_last(&consensus, &planning).await;
            }
        }
        if !consensus.leads_with_current_state() {
            applied.borrow_and_update();
            let _ = tokio::time::timeout(LOOK_AGAIN_MIN, applied.changed()).await;
            continue;
        }
        let now = consensus.clock().now_ms();
        let (due, next_due_ms) = {
            let state = consensus.view.read();
            let schedules = state.cluster.schedules();
            (
                schedules.due_firings(now, FIRINGS_PER_ENTRY_MAX),
                schedules.next_due_ms(),
            )
        };
        if due.is_empty() {
            let wait = match next_due_ms {
                Some(due) if due > now => Duration::from_millis(due - now).min(IDLE),
                Some(_) => LOOK_AGAIN_MIN,
                None => IDLE,
            };
            applied.borrow_and_update();
            let _ = tokio::time::timeout(wait, applied.changed()).await;
            continue;
        }
        let mut firings = Vec::with_capacity(due.len());
        for (schedule_id, occurrence) in due {
            let work = consensus
                .view
                .read()
                .cluster
                .schedules()
                .get(schedule_id)
                .map(|s| s.work.clone());
            let Some(work) = work else { continue };
            let (plan, task) = plan(&consensus, &planning, &work).await;
            firings.push(Firing {
                schedule_id,
                occurrence,
                plan,
                task,
            });
        }
        match consensus
            .write(None, Command::FireSchedules { firings })
            .await
        {
            Ok(Outcome::SchedulesFired { .. }) => {}
            Ok(other) => tracing::warn!("firing schedules: unexpected outcome {other:?}"),
            Err(e) => {
                tracing::warn!("could not fire due schedules yet: {e}");
                // Not leader any more, or no quorum: look again shortly, not in a tight loop.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The job's plan for one occurrence, or why there is none (recorded as a skip); for a task
/// schedule also the task checked again against today's code (its file may have changed).
async fn plan(
    consensus: &Arc<Consensus>,
    planning: &Planning,
    work: &ScheduledWork,
) -> (
    Result<porch_core::Plan, String>,
    Option<porch_core::TaskInvocation>,
) {
    let task = match &work.spec.task {
        None => None,
        Some(_) => {
            let (codedir, spec) = (planning.codedir.clone(), work.spec.clone());
            let checked = crate::blocking::off_the_runtime(move || {
                crate::api::task_request::recheck_task(&codedir, &spec)
            })
            .await;
            match checked {
                Ok(Ok(task)) => Some(task),
                Ok(Err(e)) => return (Err(e.msg), None),
                Err(e) => return (Err(format!("checking the task did not finish: {e}")), None),
            }
        }
    };
    let plan = crate::planner::plan_job(
        &work.spec,
        &planning.codedir,
        &consensus.view,
        planning.puppetdb.as_deref(),
    )
    .await
    .map(|report| report.plan)
    .map_err(|e| e.msg);
    (plan, task)
}

/// Planted bug: a new leader fires every schedule's last fired occurrence again.
async fn planted_refire_last(consensus: &Arc<Consensus>, planning: &Planning) {
    let last: Vec<_> = {
        let state = consensus.view.read();
        state
            .cluster
            .schedules()
            .all()
            .values()
            .filter_map(|s| {
                s.last_fired()
                    .map(|(occurrence, _, _)| (s.id, occurrence, s.work.clone()))
            })
            .collect()
    };
    let mut firings = Vec::new();
    for (schedule_id, occurrence, work) in last {
        let (plan, task) = plan(consensus, planning, &work).await;
        firings.push(Firing {
            schedule_id,
            occurrence,
            plan,
            task,
        });
    }
    if !firings.is_empty() {
        let _ = consensus
            .write(None, Command::FireSchedules { firings })
            .await;
    }
}
