//! The clients' schedules: a few scheduled deploys per seed (every 2-6 s, or once), created
//! with the operator's token through random nodes during the fault phase, with a random
//! missed-occurrence policy; once the liveness checks have had their time after healing, they
//! are deleted so the run can end. The leader's firing loop does the rest, under the faults.

use crate::access::SimUser;
use crate::world::World;
use porch_core::schedule::{MissedPolicy, NewSchedule, ScheduleId, ScheduledWork};
use porch_core::{Command, JobSpec, Outcome, Target};
use porch_node::clock::Clock;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a client waits for a creation or a deletion.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ScheduleClient {
    rng: SmallRng,
    /// When each schedule is to be created (simulated ms), in order.
    plan_ms: Vec<u64>,
    created: usize,
    agents: usize,
    /// Schedules acknowledged as created.
    pub acknowledged: Arc<Mutex<Vec<ScheduleId>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ScheduleClient {
    /// Up to `count` schedules, created at random instants before `phase_ms`.
    pub fn new(seed: u64, count: usize, agents: usize, phase_ms: u64) -> ScheduleClient {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5c4e_d01e);
        let mut plan_ms: Vec<u64> = (0..count)
            .map(|_| rng.random_range(2_000..phase_ms.max(2_001)))
            .collect();
        plan_ms.sort();
        ScheduleClient {
            rng,
            plan_ms,
            created: 0,
            agents,
            acknowledged: Arc::default(),
        }
    }

    /// Creates the next schedule if its time has come (after the users exist).
    pub fn step(&mut self, world: &World, access_ready: bool) {
        let Some(&due) = self.plan_ms.get(self.created) else {
            return;
        };
        let live = world.live_consensus();
        if world.now_ms() < due || live.is_empty() || !access_ready {
            return;
        }
        // As a client told "finish the rolling upgrade first" would: wait until the cluster
        // writes a format with schedules (the leader raises it within seconds of forming).
        let since = porch_core::format_version::SCHEDULES_SINCE;
        if live
            .iter()
            .all(|node| node.view.read().cluster.format_version() < since)
        {
            return;
        }
        self.created += 1;
        let nodes: Vec<String> = crate::workload::shuffled_agents(&mut self.rng, self.agents)
            [..self.rng.random_range(1..=2.min(self.agents))]
            .to_vec();
        let interval_ms = match self.rng.random_range(0..5) {
            0 => None,
            n => Some(n as u64 * 1_000 + 1_000),
        };
        let missed = if self.rng.random_bool(0.5) {
            MissedPolicy::FireOnce
        } else {
            MissedPolicy::Skip
        };
        let start_ms = world.clock.now_ms() + self.rng.random_range(500..5_000);
        let command = Command::CreateSchedule {
            schedule: NewSchedule {
                work: ScheduledWork {
                    spec: spec(nodes.clone()),
                },
                start_ms,
                interval_ms,
                missed,
                description: None,
                userdata: None,
            },
            nodes,
        };
        let via = live[self.rng.random_range(0..live.len())].clone();
        let request_id = format!("sim-schedule-{}", self.created);
        world.log(format!("client creates {request_id}"));
        let acknowledged = self.acknowledged.clone();
        tokio::spawn(async move {
            let origin = Some(SimUser::Operator.origin(via.id));
            let write = via.write_on_behalf(Some(request_id), command, origin);
            if let Ok(Ok(Outcome::ScheduleCreated { schedule_id })) =
                tokio::time::timeout(WRITE_TIMEOUT, write).await
            {
                lock(&acknowledged).push(schedule_id);
            }
        });
    }

    /// Deletes every schedule still in the state of a live node (in the background).
    pub fn delete_all(&mut self, world: &World) {
        let live = world.live_consensus();
        let Some(via) = live.first().cloned() else {
            return;
        };
        let ids: Vec<ScheduleId> = via
            .view
            .read()
            .cluster
            .schedules()
            .all()
            .keys()
            .copied()
            .collect();
        if ids.is_empty() {
            return;
        }
        world.log(format!("client deletes schedules {ids:?}"));
        tokio::spawn(async move {
            for schedule_id in ids {
                let origin = Some(SimUser::Operator.origin(via.id));
                let delete =
                    via.write_on_behalf(None, Command::DeleteSchedule { schedule_id }, origin);
                let _ = tokio::time::timeout(WRITE_TIMEOUT, delete).await;
            }
        });
    }
}

fn spec(nodes: Vec<String>) -> JobSpec {
    JobSpec {
        environment: "production".into(),
        target: Target::Nodes(nodes),
        noop: false,
        no_noop: false,
        concurrency: None,
        enforce_environment: true,
        debug: false,
        trace: false,
        evaltrace: false,
        description: Some("scheduled".into()),
        owner: porch_core::Actor {
            id: "forged".into(),
            login: "forged".into(),
        },
        task: None,
    }
}
