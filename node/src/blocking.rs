//! Blocking work (reading and hashing code files, password hashing) kept off the async
//! workers: the one place that decides where such work runs.
//!
//! On a multi-threaded runtime (a real node) it goes to tokio's blocking pool. On a
//! current-thread runtime — the simulation, which runs a whole cluster on one thread under
//! virtual time — it runs in place: there a thread hop would make the moment its result
//! arrives, among the other tasks ready at the same virtual instant, depend on how fast the
//! machine happens to be, and a seed would no longer replay bit for bit on a loaded machine.

use std::fmt;
use tokio::runtime::{Handle, RuntimeFlavor};

/// The blocking work panicked or its runtime is shutting down.
#[derive(Debug)]
pub struct NotFinished(String);

impl fmt::Display for NotFinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `work` off the async workers where there are threads to spare (see the module doc).
pub async fn off_the_runtime<T, F>(work: F) -> Result<T, NotFinished>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| NotFinished(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn on_one_thread_the_work_runs_in_place() {
        let caller = std::thread::current().id();
        let ran_on = off_the_runtime(move || std::thread::current().id())
            .await
            .unwrap();
        assert_eq!(ran_on, caller);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_many_threads_it_goes_to_the_blocking_pool() {
        let name = off_the_runtime(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert_ne!(name.as_deref(), Some("tokio-runtime-worker"));
    }
}
