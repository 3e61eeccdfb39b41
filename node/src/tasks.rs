//! The tasks one node spawns, so that stopping the node stops all of them.
//!
//! A crashed process takes every task with it; a node stopped in-process (the simulation
//! crashes nodes this way, tests stop them) must too, or a session driver of a "dead" node
//! would keep committing results and inventory changes as if it were alive.

use std::future::Future;
use std::sync::Mutex;
use tokio::task::AbortHandle;

/// Finished tasks are pruned once this many handles accumulate.
const PRUNE_AT: usize = 1024;

#[derive(Default)]
pub struct TaskGroup {
    handles: Mutex<Vec<AbortHandle>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl TaskGroup {
    /// Spawns `future` as part of this group; after [`TaskGroup::abort_all`] it is aborted at once.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(future).abort_handle();
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            handle.abort();
            return;
        }
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if handles.len() >= PRUNE_AT {
            handles.retain(|h| !h.is_finished());
        }
        handles.push(handle);
    }

    /// Aborts every task of the group, and any spawned later.
    pub fn abort_all(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn abort_all_stops_running_and_later_tasks() {
        let group = TaskGroup::default();
        let ran_late = Arc::new(AtomicBool::new(false));
        group.spawn(std::future::pending());
        group.abort_all();
        let flag = ran_late.clone();
        group.spawn(async move { flag.store(true, Ordering::SeqCst) });
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert!(
            !ran_late.load(Ordering::SeqCst),
            "a task spawned after abort_all ran"
        );
        assert!(group.handles.lock().unwrap().is_empty());
    }
}
