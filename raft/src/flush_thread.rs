//! One OS thread per store that makes its writes durable, with group commit.
//!
//! Why a thread of its own: an fsync blocks, and on the async workers it would stall every
//! task queued behind it (raft RPCs, agent sessions, the API). sled's own `flush_async` hands
//! each flush to sled's global thread pool, whose every job woke all of its idle threads (seven
//! or more per process): on a 2-core machine those wake-ups cost more than the fsync. Here one
//! thread waits, and a flush request wakes exactly that thread.
//!
//! Group commit: every request waiting when a flush starts is answered by that one flush, so
//! under load there is never more than one fsync in flight and its cost is shared.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Called once the writes made before the request are durable, or with why they are not.
pub type FlushDone = Box<dyn FnOnce(io::Result<()>) + Send>;

#[derive(Default)]
struct Queue {
    waiting: Vec<FlushDone>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

pub struct FlushThread {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FlushThread {
    /// Starts the thread; `flush` makes every write made before it was called durable. It is
    /// told how many requests it answers (for the group-commit batch size in the metrics).
    pub fn start(
        name: &str,
        flush: impl Fn(usize) -> io::Result<()> + Send + 'static,
    ) -> io::Result<FlushThread> {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&worker, flush))?;
        Ok(FlushThread {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a flush covering every write made before this call; `done` runs on the flush
    /// thread once it completed (so it must be quick: it delays the next flush).
    pub fn request(&self, done: FlushDone) {
        let mut queue = lock(&self.shared.queue);
        if queue.closed {
            drop(queue);
            done(Err(io::Error::other("the store is closed")));
            return;
        }
        queue.waiting.push(done);
        drop(queue);
        self.shared.wake.notify_one();
    }
}

impl Drop for FlushThread {
    /// Answers what is still queued (with a last flush) and waits for the thread, so the store
    /// is fully closed when its owner is gone (a restart in the same process reopens it).
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // A panic in a `done` callback must not wedge every later flush.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run(shared: &Shared, flush: impl Fn(usize) -> io::Result<()>) {
    loop {
        let batch = {
            let mut queue = lock(&shared.queue);
            while queue.waiting.is_empty() && !queue.closed {
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if queue.waiting.is_empty() {
                return; // closed, nothing left to answer
            }
            std::mem::take(&mut queue.waiting)
        };
        let result = flush(batch.len());
        for done in batch {
            done(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn requests_waiting_during_a_flush_share_the_next_one() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let counter = flushes.clone();
        let thread = FlushThread::start("test-flush", move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = entered_tx.send(());
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(5));
            Ok(())
        })
        .unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let tx = done_tx.clone();
        thread.request(Box::new(move |r| tx.send(r.is_ok()).unwrap()));
        entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // The first flush is running: these three queue up behind it.
        for _ in 0..3 {
            let tx = done_tx.clone();
            thread.request(Box::new(move |r| tx.send(r.is_ok()).unwrap()));
        }
        release_tx.send(()).unwrap();
        entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        release_tx.send(()).unwrap();
        for _ in 0..4 {
            assert!(done_rx.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            2,
            "one flush for the three waiting"
        );
    }

    #[test]
    fn a_failed_flush_fails_every_request_it_covered_and_a_closed_store_refuses() {
        let thread =
            FlushThread::start("test-flush", |_| Err(io::Error::other("disk gone"))).unwrap();
        let (tx, rx) = mpsc::channel();
        thread.request(Box::new(move |r| {
            tx.send(r.map_err(|e| e.to_string())).unwrap()
        }));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Err("disk gone".to_string())
        );
        lock(&thread.shared.queue).closed = true;
        let (tx, rx) = mpsc::channel();
        thread.request(Box::new(move |r| tx.send(r.is_err()).unwrap()));
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
    }
}
