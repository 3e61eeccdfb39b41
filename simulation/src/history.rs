//! What the simulation's clients did and were told: every operation on the job registry
//! (submit with a request id, stop, show) with its invocation time and, if one came, its
//! response and response time — the history [`crate::linearizability`] checks.

use std::sync::{Arc, Mutex};

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// Submit a job under a request id (retried under the same id through another node).
    Submit {
        request_id: String,
    },
    Stop {
        job: u64,
    },
    /// Read a job through a linearizable read (ReadIndex).
    Show {
        job: u64,
    },
}

/// How far a job has come, as a client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Not ended, not stopped.
    Active,
    /// A stop took effect (stopping or stopped).
    Halted,
    /// Ended on its own (finished or failed).
    Ended,
}

impl Phase {
    pub fn of(state: porch_core::JobState) -> Phase {
        use porch_core::JobState;
        match state {
            JobState::Stopping | JobState::Stopped => Phase::Halted,
            JobState::Finished | JobState::Failed => Phase::Ended,
            JobState::New | JobState::Ready | JobState::Running => Phase::Active,
        }
    }
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Return {
    Submitted {
        job: u64,
    },
    /// The submission was refused by the state machine (it never creates a job).
    Refused,
    Stopped,
    UnknownJob,
    NotFound,
    /// The job, the request id that created it, and its phase.
    Found {
        request_id: String,
        phase: Phase,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub call: Call,
    pub invoked_ms: u64,
    /// `None`: no answer came (a timeout, a lost connection): it may have taken effect at
    /// any time after its invocation, or never.
    pub returned: Option<(u64, Return)>,
}

/// The history, shared with the clients' tasks.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Vec<Operation>>>);

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Operation>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an invocation; returns its handle for [`History::complete`].
    pub fn invoke(&self, call: Call, at_ms: u64) -> usize {
        let mut ops = self.lock();
        ops.push(Operation {
            call,
            invoked_ms: at_ms,
            returned: None,
        });
        ops.len() - 1
    }

    pub fn complete(&self, handle: usize, at_ms: u64, value: Return) {
        if let Some(op) = self.lock().get_mut(handle) {
            op.returned = Some((at_ms, value));
        }
    }

    pub fn operations(&self) -> Vec<Operation> {
        self.lock().clone()
    }
}
