//! Work that must get done but must not compete with serving: encoding a snapshot, writing
//! it, deleting purged log entries.
//!
//! Each of these costs tens to hundreds of milliseconds of CPU at a large state, and all of
//! a cluster's nodes do them at about the same moment (a snapshot every N entries). On
//! tokio's blocking pool they ran at the same priority as the threads that append, replicate
//! and answer, and set the p99 of every write in the window (measured: 64 clients, p99
//! 10 ms without snapshots, 20-25 ms with one every 20,000 entries). Here they run one at a
//! time on a thread of their own with a lower scheduling priority (nice 10 on Linux): the
//! kernel gives it the CPU the serving threads leave, so the work takes longer in wall time
//! and costs requests little.
//!
//! The simulation's single-threaded runtime runs the work in place, so seeds stay
//! deterministic.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::mpsc;
use tokio::runtime::{Handle, RuntimeFlavor};

type Job = Box<dyn FnOnce() + Send>;

/// Niceness of the background thread: weight ~110 against 1,024 for a default thread, so
/// under contention it gets about a tenth of a core, and all of an idle one.
const NICENESS: i32 = 10;

/// Runs `work` on the background thread and waits for its result (in place when the
/// runtime is the simulation's single thread).
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let in_place = Handle::try_current()
        .map(|handle| handle.runtime_flavor() != RuntimeFlavor::MultiThread)
        .unwrap_or(true);
    if in_place {
        return Ok(work());
    }
    let (done, result) = tokio::sync::oneshot::channel();
    submit(Box::new(move || {
        let _ = done.send(work());
    }))?;
    result
        .await
        .map_err(|_| io::Error::other("background work panicked or was dropped"))
}

/// Starts `work` on the background thread without waiting for it (in place in the
/// simulation).
pub fn spawn(work: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let in_place = Handle::try_current()
        .map(|handle| handle.runtime_flavor() != RuntimeFlavor::MultiThread)
        .unwrap_or(true);
    if in_place {
        work();
        return Ok(());
    }
    submit(Box::new(work))
}

fn submit(job: Job) -> io::Result<()> {
    static QUEUE: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("porch-background".into())
            .spawn(move || {
                lower_priority();
                for job in rx {
                    // A panicking job (a bug) must not take later snapshots and purges with it;
                    // its caller sees the dropped result as an error.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map(|_| tx)
            .map_err(|e| format!("cannot start the background thread: {e}"))
    });
    match queue {
        Ok(tx) => tx
            .send(job)
            .map_err(|_| io::Error::other("the background thread is gone")),
        Err(e) => Err(io::Error::other(e.clone())),
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain syscalls on this thread's own id; no memory is shared with the kernel.
    let result = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS)
    };
    if result != 0 {
        tracing::warn!(
            "could not lower the background thread's priority: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_runs_off_the_workers_at_a_lower_priority_and_returns_its_result() {
        let (name, niceness) = run(|| {
            let name = std::thread::current().name().map(str::to_owned);
            // SAFETY: reads this thread's own priority.
            let niceness = unsafe {
                libc::getpriority(
                    libc::PRIO_PROCESS,
                    libc::syscall(libc::SYS_gettid) as libc::id_t,
                )
            };
            (name, niceness)
        })
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("porch-background"));
        assert!(niceness >= NICENESS, "niceness {niceness}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_is_an_error_and_the_thread_keeps_working() {
        let failed = run(|| -> u32 { panic!("planted") }).await;
        assert!(failed.is_err());
        assert_eq!(run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_simulation_runtime_runs_work_in_place() {
        let here = std::thread::current().id();
        assert_eq!(
            run(move || std::thread::current().id()).await.unwrap(),
            here
        );
    }
}
