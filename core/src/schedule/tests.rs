use super::*;
use crate::access::NewUser;
use crate::command::{Command, Origin, Outcome, Request, RunOutcome};
use crate::job::{JobState, Target};
use crate::node_run::RunResult;
use crate::state::ClusterState;
use bincode::Options;

const T0: u64 = 1_000_000;

fn request(now_ms: u64, command: Command, token: Option<&str>) -> Request {
    Request {
        request_id: None,
        now_ms,
        command,
        origin: token.map(|t| Origin {
            token_id: t.into(),
            source: "test".into(),
        }),
    }
}

fn user(id: &str, roles: &[&str]) -> NewUser {
    NewUser {
        id: id.into(),
        login: id.into(),
        display_name: id.into(),
        password_hash: "$argon2id$stub".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

/// A cluster with an admin, and an operator `op` holding token `t-op`.
fn cluster() -> ClusterState {
    let mut state = ClusterState::new();
    let setup = [
        Command::SetClusterId {
            cluster_id: "c".into(),
        },
        Command::SetFormatVersion {
            version: crate::format_version::SCHEDULES_SINCE,
        },
        Command::BootstrapAccess {
            admin: user("admin", &["admin"]),
        },
        Command::AddUser {
            user: user("op", &["operator"]),
        },
        Command::IssueToken {
            token_id: "t-op".into(),
            secret_sha256: [1; 32],
            user_id: "op".into(),
            lifetime_ms: 3_600_000,
            label: None,
            source: "test".into(),
        },
    ];
    for command in setup {
        let outcome = state.apply(request(T0, command, None));
        assert!(!matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    }
    state
}

fn spec() -> JobSpec {
    JobSpec {
        environment: "production".into(),
        target: Target::Nodes(vec!["web1".into()]),
        noop: false,
        no_noop: false,
        concurrency: None,
        enforce_environment: true,
        debug: false,
        trace: false,
        evaltrace: false,
        description: None,
        owner: crate::Actor {
            id: "forged".into(),
            login: "forged".into(),
        },
        task: None,
    }
}

fn create(state: &mut ClusterState, interval_ms: Option<u64>, missed: MissedPolicy) -> ScheduleId {
    let command = Command::CreateSchedule {
        schedule: NewSchedule {
            work: ScheduledWork { spec: spec() },
            start_ms: T0 + 10_000,
            interval_ms,
            missed,
            description: None,
            userdata: None,
        },
        nodes: vec!["web1".into()],
    };
    match state.apply(request(T0, command, Some("t-op"))) {
        Outcome::ScheduleCreated { schedule_id } => schedule_id,
        other => panic!("expected a schedule, got {other:?}"),
    }
}

fn plan() -> Plan {
    Plan::independent(["web1".to_string()]).unwrap()
}

fn fire(state: &mut ClusterState, now_ms: u64, id: ScheduleId, occurrence: u64) -> FiringResult {
    let command = Command::FireSchedules {
        firings: vec![Firing {
            schedule_id: id,
            occurrence,
            plan: Ok(plan()),
            task: None,
        }],
    };
    match state.apply(request(now_ms, command, None)) {
        Outcome::SchedulesFired { mut results } => results.remove(0),
        other => panic!("expected firing results, got {other:?}"),
    }
}

/// Ends `job` by starting and finishing its one run.
fn finish(state: &mut ClusterState, now_ms: u64, job: JobId) {
    let start = Command::StartRuns {
        runs: vec![crate::RunStart {
            job_id: job,
            node_index: 0,
            attempt: 1,
        }],
        runs_in_flight_max: None,
    };
    let Outcome::RunsStarted { started, .. } = state.apply(request(now_ms, start, None)) else {
        panic!("no start");
    };
    let report = Command::ReportRun {
        transaction_id: started[0].transaction_id.clone(),
        outcome: RunOutcome::Finished(RunResult::default()),
    };
    state.apply(request(now_ms, report, None));
    assert!(state.job(job).unwrap().state().is_terminal());
}

fn fired(result: &FiringResult) -> JobId {
    fired_job(result).unwrap_or_else(|| panic!("expected a job, got {result:?}"))
}

#[test]
fn an_occurrence_fires_once_and_a_new_leader_cannot_fire_it_again() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    let first = fired(&fire(&mut state, T0 + 10_000, id, 1));
    assert_eq!(
        state.schedules().job_origin(first),
        Some(JobOrigin {
            schedule_id: id,
            occurrence: 1
        })
    );
    // Another leader proposing occurrence 1 again (it saw an older state) is refused.
    let again = fire(&mut state, T0 + 10_500, id, 1);
    assert!(matches!(again, FiringResult::Refused { .. }), "{again:?}");
    assert_eq!(state.schedules().job_links().len(), 1);
    assert_eq!(state.schedules().get(id).unwrap().owner.login, "op");
    assert_eq!(state.job(first).unwrap().spec.owner.login, "op");
}

#[test]
fn an_occurrence_is_refused_before_it_is_due_and_after_its_turn() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    assert!(matches!(
        fire(&mut state, T0 + 9_999, id, 1),
        FiringResult::Refused { .. }
    ));
    assert!(matches!(
        fire(&mut state, T0 + 20_000, id, 2),
        FiringResult::Refused { .. }
    ));
    assert_eq!(state.schedules().get(id).unwrap().next_occurrence, 1);
}

#[test]
fn the_next_occurrence_is_skipped_and_recorded_while_the_previous_job_runs() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    let first = fired(&fire(&mut state, T0 + 10_000, id, 1));
    let second = fire(&mut state, T0 + 12_000, id, 2);
    assert_eq!(
        second,
        FiringResult::Decided {
            first: 2,
            last: 2,
            outcome: OccurrenceOutcome::Skipped(SkipReason::Overlap { running_job: first }),
        }
    );
    finish(&mut state, T0 + 13_000, first);
    fired(&fire(&mut state, T0 + 14_000, id, 3));
    let schedule = state.schedules().get(id).unwrap();
    assert_eq!((schedule.fired_total, schedule.skipped_total), (2, 1));
}

#[test]
fn occurrences_missed_without_quorum_fire_once_when_it_returns() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    // No leader from before occurrence 1 until occurrence 6 was due.
    let result = fire(&mut state, T0 + 20_500, id, 1);
    let job = fired(&result);
    assert!(matches!(
        result,
        FiringResult::Decided {
            first: 1,
            last: 6,
            ..
        }
    ));
    assert_eq!(
        state.schedules().job_links().len(),
        1,
        "one job, never more"
    );
    assert_eq!(state.schedules().job_origin(job).unwrap().occurrence, 6);
    assert_eq!(state.schedules().get(id).unwrap().next_occurrence, 7);
    assert!(matches!(
        fire(&mut state, T0 + 20_600, id, 6),
        FiringResult::Refused { .. }
    ));
}

#[test]
fn occurrences_missed_without_quorum_are_skipped_under_the_skip_policy() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::Skip);
    // 0.5 s after occurrence 6 was due: 1-5 were missed, 6 is on time.
    fired(&fire(&mut state, T0 + 20_500, id, 1));
    let schedule = state.schedules().get(id).unwrap();
    assert_eq!(
        schedule.history[0],
        OccurrenceRecord {
            first: 1,
            last: 5,
            decided_ms: T0 + 20_500,
            outcome: OccurrenceOutcome::Skipped(SkipReason::Missed),
        }
    );
    assert_eq!(schedule.skipped_total, 5);
    // A one-off that comes back far too late is skipped, not run.
    let mut state = cluster();
    let once = create(&mut state, None, MissedPolicy::Skip);
    let late = fire(&mut state, T0 + 10_000 + SKIP_LATER_THAN_MS + 1, once, 1);
    assert!(matches!(
        late,
        FiringResult::Decided {
            outcome: OccurrenceOutcome::Skipped(SkipReason::Missed),
            ..
        }
    ));
    assert_eq!(
        state.schedules().get(once).unwrap().ended,
        Some(ScheduleEnd::Completed)
    );
}

#[test]
fn a_schedule_stops_when_its_owner_is_removed_or_loses_the_right() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    let demote = Command::UpdateUser {
        login: "op".into(),
        password_hash: None,
        roles: Some(vec!["viewer".into()]),
    };
    state.apply(request(T0 + 1, demote, None));
    let result = fire(&mut state, T0 + 10_000, id, 1);
    assert!(
        matches!(
            result,
            FiringResult::Decided {
                outcome: OccurrenceOutcome::Ended(ScheduleEnd::PermissionLost { .. }),
                ..
            }
        ),
        "{result:?}"
    );
    assert!(state.schedules().job_links().is_empty());
    assert_eq!(state.schedules().due_firings(T0 + 100_000, 10), vec![]);

    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    state.apply(request(
        T0 + 1,
        Command::RemoveUser { login: "op".into() },
        None,
    ));
    let result = fire(&mut state, T0 + 10_000, id, 1);
    assert!(matches!(
        result,
        FiringResult::Decided {
            outcome: OccurrenceOutcome::Ended(ScheduleEnd::OwnerRemoved),
            ..
        }
    ));
}

#[test]
fn creation_needs_the_right_to_run_the_job_and_a_future_start() {
    let mut state = cluster();
    state.apply(request(
        T0,
        Command::AddUser {
            user: user("viewer1", &["viewer"]),
        },
        None,
    ));
    state.apply(request(
        T0,
        Command::IssueToken {
            token_id: "t-v".into(),
            secret_sha256: [2; 32],
            user_id: "viewer1".into(),
            lifetime_ms: 3_600_000,
            label: None,
            source: "test".into(),
        },
        None,
    ));
    let new = |start_ms, interval_ms| Command::CreateSchedule {
        schedule: NewSchedule {
            work: ScheduledWork { spec: spec() },
            start_ms,
            interval_ms,
            missed: MissedPolicy::FireOnce,
            description: None,
            userdata: None,
        },
        nodes: vec!["web1".into()],
    };
    let by_viewer = state.apply(request(T0, new(T0 + 5_000, None), Some("t-v")));
    assert!(
        matches!(
            by_viewer,
            Outcome::Rejected(crate::Rejection::Access(
                crate::access::AccessRefusal::PermissionDenied { .. }
            ))
        ),
        "{by_viewer:?}"
    );
    let past = state.apply(request(T0, new(T0 - 1, None), Some("t-op")));
    assert!(
        matches!(past, Outcome::Rejected(crate::Rejection::Invalid(why)) if why.contains("past"))
    );
    let zero = state.apply(request(T0, new(T0 + 5_000, Some(0)), Some("t-op")));
    assert!(
        matches!(zero, Outcome::Rejected(crate::Rejection::Invalid(why)) if why.contains("interval"))
    );
    assert!(state.schedules().is_empty());
    // Without a token, nobody owns it: refused.
    let anonymous = state.apply(request(T0, new(T0 + 5_000, None), None));
    assert!(matches!(anonymous, Outcome::Rejected(_)));
}

#[test]
fn a_deleted_schedule_fires_no_more_and_an_unknown_one_is_named() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    let deleted = state.apply(request(
        T0 + 1,
        Command::DeleteSchedule { schedule_id: id },
        Some("t-op"),
    ));
    assert_eq!(deleted, Outcome::ScheduleDeleted { schedule_id: id });
    assert!(matches!(
        fire(&mut state, T0 + 10_000, id, 1),
        FiringResult::Refused { .. }
    ));
    let unknown = state.apply(request(
        T0 + 2,
        Command::DeleteSchedule { schedule_id: id },
        Some("t-op"),
    ));
    assert_eq!(
        unknown,
        Outcome::Rejected(crate::Rejection::UnknownSchedule(id))
    );
}

#[test]
fn due_firings_name_each_active_schedule_next_occurrence_earliest_first() {
    let mut state = cluster();
    let a = create(&mut state, Some(5_000), MissedPolicy::FireOnce);
    let b = create(&mut state, None, MissedPolicy::FireOnce);
    assert_eq!(state.schedules().due_firings(T0 + 9_999, 10), vec![]);
    assert_eq!(
        state.schedules().due_firings(T0 + 10_000, 10),
        vec![(a, 1), (b, 1)]
    );
    let job = fired(&fire(&mut state, T0 + 10_000, b, 1));
    assert_eq!(state.job(job).unwrap().state(), JobState::Ready);
    assert_eq!(
        state.schedules().get(b).unwrap().ended,
        Some(ScheduleEnd::Completed)
    );
    assert_eq!(state.schedules().due_firings(T0 + 10_000, 10), vec![(a, 1)]);
    assert_eq!(state.schedules().next_due_ms(), Some(T0 + 10_000));
}

#[test]
fn schedules_survive_a_snapshot_with_their_due_index() {
    let mut state = cluster();
    let id = create(&mut state, Some(2_000), MissedPolicy::Skip);
    fired(&fire(&mut state, T0 + 10_000, id, 1));
    let version = crate::format_version::FORMAT_VERSION;
    let bytes = bincode::serialize(&state.stored(version).unwrap()).unwrap();
    let decoded = ClusterState::deserialize_stored(
        version,
        &mut bincode::Deserializer::from_slice(&bytes, bincode::options().with_fixint_encoding()),
    )
    .unwrap();
    assert_eq!(decoded, state);
    assert_eq!(
        decoded.schedules().due_firings(T0 + 12_000, 10),
        vec![(id, 2)]
    );
}

fn task(name: &str, sha256: &str) -> crate::task::TaskInvocation {
    crate::task::TaskInvocation {
        name: name.into(),
        file_name: "init.sh".into(),
        file_path: format!("environments/production/modules/{name}/tasks/init.sh"),
        sha256: sha256.into(),
        size_bytes: 10,
        params_json: r#"{"action":"status"}"#.into(),
        input_method: crate::task::TaskInputMethod::Stdin,
        timeout_secs: 60,
        sensitive: vec![],
    }
}

/// A task schedule of task `package` created by `op`, due at `T0 + 10 s` every 2 s.
fn create_task_schedule(state: &mut ClusterState) -> ScheduleId {
    let mut spec = spec();
    spec.task = Some(task("package", "aa"));
    let command = Command::CreateSchedule {
        schedule: NewSchedule {
            work: ScheduledWork { spec },
            start_ms: T0 + 10_000,
            interval_ms: Some(2_000),
            missed: MissedPolicy::FireOnce,
            description: None,
            userdata: None,
        },
        nodes: vec!["web1".into()],
    };
    match state.apply(request(T0, command, Some("t-op"))) {
        Outcome::ScheduleCreated { schedule_id } => schedule_id,
        other => panic!("expected a schedule, got {other:?}"),
    }
}

fn fire_task(
    state: &mut ClusterState,
    now_ms: u64,
    id: ScheduleId,
    occurrence: u64,
    task: Option<crate::task::TaskInvocation>,
) -> FiringResult {
    let command = Command::FireSchedules {
        firings: vec![Firing {
            schedule_id: id,
            occurrence,
            plan: Ok(plan()),
            task,
        }],
    };
    match state.apply(request(now_ms, command, None)) {
        Outcome::SchedulesFired { mut results } => results.remove(0),
        other => panic!("expected firing results, got {other:?}"),
    }
}

#[test]
fn a_task_occurrence_runs_the_task_as_the_leader_checked_it_for_that_occurrence() {
    let mut state = cluster();
    let id = create_task_schedule(&mut state);
    assert_eq!(state.schedules().get(id).unwrap().work.type_name(), "task");
    // The file changed since the schedule was created: the occurrence runs today's hash.
    let job = fired_job(&fire_task(
        &mut state,
        T0 + 10_000,
        id,
        1,
        Some(task("package", "bb")),
    ))
    .expect("fired");
    let spec = &state.job(job).unwrap().spec;
    assert_eq!(spec.task.as_ref().unwrap().sha256, "bb");
    assert_eq!(spec.owner.login, "op");
}

#[test]
fn a_task_occurrence_without_its_checked_task_is_skipped_not_run() {
    let mut state = cluster();
    let id = create_task_schedule(&mut state);
    let deploy = create(&mut state, Some(2_000), MissedPolicy::FireOnce);
    for (occurrence, checked) in [(1, None), (2, Some(task("other", "cc")))] {
        let result = fire_task(
            &mut state,
            T0 + 10_000 + (occurrence - 1) * 2_000,
            id,
            occurrence,
            checked,
        );
        assert!(
            matches!(
                &result,
                FiringResult::Decided {
                    outcome: OccurrenceOutcome::Skipped(SkipReason::PlanFailed { .. }),
                    ..
                }
            ),
            "{result:?}"
        );
    }
    assert!(state.jobs().is_empty());
    // A deploy schedule given a task runs nothing either.
    let result = fire_task(
        &mut state,
        T0 + 12_000,
        deploy,
        1,
        Some(task("package", "aa")),
    );
    assert!(fired_job(&result).is_none(), "{result:?}");
    assert!(state.jobs().is_empty());
}

#[test]
fn a_task_schedule_needs_and_keeps_needing_the_run_task_permission() {
    let mut state = cluster();
    // A role that may run Puppet anywhere but no task.
    let runner = Command::AddRole {
        name: "runner".into(),
        description: "Puppet runs only".into(),
        permissions: vec![
            crate::access::permission::Permission::View,
            crate::access::permission::Permission::Run {
                environments: vec![],
                nodes: vec![],
                applications: vec![],
            },
        ],
    };
    assert!(!matches!(
        state.apply(request(T0, runner, None)),
        Outcome::Rejected(_)
    ));
    state.apply(request(
        T0,
        Command::AddUser {
            user: user("ops2", &["runner"]),
        },
        None,
    ));
    state.apply(request(
        T0,
        Command::IssueToken {
            token_id: "t-ops2".into(),
            secret_sha256: [2; 32],
            user_id: "ops2".into(),
            lifetime_ms: 3_600_000,
            label: None,
            source: "test".into(),
        },
        None,
    ));
    let mut spec = spec();
    spec.task = Some(task("package", "aa"));
    let command = Command::CreateSchedule {
        schedule: NewSchedule {
            work: ScheduledWork { spec },
            start_ms: T0 + 10_000,
            interval_ms: Some(2_000),
            missed: MissedPolicy::FireOnce,
            description: None,
            userdata: None,
        },
        nodes: vec!["web1".into()],
    };
    let refused = state.apply(request(T0, command, Some("t-ops2")));
    assert!(matches!(refused, Outcome::Rejected(_)), "{refused:?}");

    // The operator's schedule stops once the operator may run Puppet but no task any more.
    let id = create_task_schedule(&mut state);
    state.apply(request(
        T0 + 1,
        Command::UpdateUser {
            login: "op".into(),
            password_hash: None,
            roles: Some(vec!["runner".into()]),
        },
        None,
    ));
    let result = fire_task(&mut state, T0 + 10_000, id, 1, Some(task("package", "aa")));
    assert!(
        matches!(
            result,
            FiringResult::Decided {
                outcome: OccurrenceOutcome::Ended(ScheduleEnd::PermissionLost { .. }),
                ..
            }
        ),
        "{result:?}"
    );
    assert!(state.jobs().is_empty());
}

#[test]
fn no_schedule_is_created_while_the_cluster_writes_a_format_without_them() {
    let mut state = ClusterState::new();
    assert!(state.format_version() < crate::format_version::SCHEDULES_SINCE);
    state.apply(request(
        T0,
        Command::SetClusterId {
            cluster_id: "c".into(),
        },
        None,
    ));
    state.apply(request(
        T0,
        Command::BootstrapAccess {
            admin: user("admin", &["admin"]),
        },
        None,
    ));
    state.apply(request(
        T0,
        Command::IssueToken {
            token_id: "t-admin".into(),
            secret_sha256: [3; 32],
            user_id: "admin".into(),
            lifetime_ms: 3_600_000,
            label: None,
            source: "test".into(),
        },
        None,
    ));
    let command = Command::CreateSchedule {
        schedule: NewSchedule {
            work: ScheduledWork { spec: spec() },
            start_ms: T0 + 10_000,
            interval_ms: None,
            missed: MissedPolicy::FireOnce,
            description: None,
            userdata: None,
        },
        nodes: vec!["web1".into()],
    };
    match state.apply(request(T0, command, Some("t-admin"))) {
        Outcome::Rejected(crate::command::Rejection::Invalid(why)) => {
            assert!(why.contains("rolling upgrade"), "{why}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(state.schedules().is_empty());
}
