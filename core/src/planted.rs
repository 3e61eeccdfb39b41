//! Known bugs that can be planted at run time, to prove that the simulation's checkers catch
//! them (a checker that never fires proves nothing). The code behind each switch exists only
//! when porch-core is built with feature `planted-bugs`, which only the simulation's own tests
//! and `porch sim --plant-bug` builds enable; without it [`active`] is a constant `false` and
//! the compiler removes every planted branch.
//!
//! A bug is planted for the current thread: the simulation runs each seed on one thread.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// The leader sends a run to its agent when it proposes the start, not once committed.
    DispatchBeforeCommit,
    /// A node's first dependency is treated as satisfied.
    IgnoreDependencyEdge,
    /// After a (re)connect, in-flight runs are re-sent as new attempts instead of asking the
    /// agent what it knows.
    RedispatchWithoutStatusQuery,
    /// A report for a transaction that is no longer in flight is applied to its run anyway.
    AcceptStaleReport,
    /// A job runs one node more at once than its concurrency allows.
    ExceedConcurrencyByOne,
    /// The raft log acknowledges an append before its flush completed.
    AckBeforeFlush,
    /// The replicated clock takes each command's time, even one earlier than its own.
    ClockFollowsLeader,
    /// A read does not ask the leader for the commit index first (no ReadIndex).
    ReadWithoutBarrier,
    /// A message dropped for a full session queue is forgotten: no status query follows.
    ForgetDroppedRun,
    /// Stored records are believed without their checksum (a corrupt one is read as
    /// whatever its bytes now say).
    SkipChecksum,
    /// The agent runs a transaction before the spool record accepting it is durable.
    RunBeforeSpoolSync,
    /// A new leader fires the last fired occurrence of each schedule again, and `apply`
    /// accepts the occurrence before the next one.
    ScheduleRefireLast,
    /// A schedule's next occurrence fires although the job of the previous one still runs.
    ScheduleOverlapUnchecked,
    /// An occurrence more than 2 s late (a leader change) is never fired nor skipped.
    ScheduleLateOccurrenceLost,
    /// A task's parameters go to the agent through a float: every number is re-rendered as
    /// an `f64` (integers beyond 2^53 lose digits), as a JSON layer without 64-bit integers does.
    TaskParamsThroughFloat,
    /// The agent's task cache looks a file up by its name, not its hash: after the code
    /// changed, an agent runs the version it cached instead of the one the job planned.
    TaskCacheByName,
}

pub const ALL_BUGS: [Bug; 16] = [
    Bug::DispatchBeforeCommit,
    Bug::IgnoreDependencyEdge,
    Bug::RedispatchWithoutStatusQuery,
    Bug::AcceptStaleReport,
    Bug::ExceedConcurrencyByOne,
    Bug::AckBeforeFlush,
    Bug::ClockFollowsLeader,
    Bug::ReadWithoutBarrier,
    Bug::ForgetDroppedRun,
    Bug::SkipChecksum,
    Bug::RunBeforeSpoolSync,
    Bug::ScheduleRefireLast,
    Bug::ScheduleOverlapUnchecked,
    Bug::ScheduleLateOccurrenceLost,
    Bug::TaskParamsThroughFloat,
    Bug::TaskCacheByName,
];

/// Whether this build can plant bugs at all.
pub const AVAILABLE: bool = cfg!(feature = "planted-bugs");

impl Bug {
    pub fn name(self) -> &'static str {
        match self {
            Bug::DispatchBeforeCommit => "dispatch-before-commit",
            Bug::IgnoreDependencyEdge => "ignore-dependency-edge",
            Bug::RedispatchWithoutStatusQuery => "redispatch-without-status-query",
            Bug::AcceptStaleReport => "accept-stale-report",
            Bug::ExceedConcurrencyByOne => "exceed-concurrency-by-one",
            Bug::AckBeforeFlush => "ack-before-flush",
            Bug::ClockFollowsLeader => "clock-follows-leader",
            Bug::ReadWithoutBarrier => "read-without-barrier",
            Bug::ForgetDroppedRun => "forget-dropped-run",
            Bug::SkipChecksum => "skip-checksum",
            Bug::RunBeforeSpoolSync => "run-before-spool-sync",
            Bug::ScheduleRefireLast => "schedule-refire-last",
            Bug::ScheduleOverlapUnchecked => "schedule-overlap-unchecked",
            Bug::ScheduleLateOccurrenceLost => "schedule-late-occurrence-lost",
            Bug::TaskParamsThroughFloat => "task-params-through-float",
            Bug::TaskCacheByName => "task-cache-by-name",
        }
    }

    pub fn parse(name: &str) -> Result<Bug, String> {
        ALL_BUGS
            .iter()
            .copied()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = ALL_BUGS.iter().map(|b| b.name()).collect();
                format!("unknown bug '{name}' (known: {})", known.join(", "))
            })
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) for this thread. Returns an error in a build without the feature.
pub fn plant(bug: Option<Bug>) -> Result<(), String> {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED.with(|p| p.set(bug));
        Ok(())
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        match bug {
            None => Ok(()),
            Some(bug) => Err(format!(
                "cannot plant {bug}: this build has no planted bugs (build with --features porch-simulation/planted-bugs)"
            )),
        }
    }
}

/// Whether `bug` is planted on this thread.
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED.with(|p| p.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
