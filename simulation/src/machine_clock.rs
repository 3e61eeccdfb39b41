//! One machine's wall clock in the simulation: true (simulated) time, plus the jumps and
//! drift of [`crate::config::Fault::ClockJump`] and [`crate::config::Fault::ClockDrift`].
//! Wall clocks are not monotonic on real machines (NTP steps them, VMs pause, oscillators
//! drift), and porch's nodes and agents read theirs through the `Clock` seam; the simulation
//! gives each machine its own, so a leader whose clock runs behind stamps old times.

use crate::world::SimClock;
use porch_node::clock::Clock;
use std::sync::{Arc, Mutex};

pub struct MachineClock {
    truth: Arc<SimClock>,
    state: Mutex<Anchor>,
}

/// The local time is `local_ms + (true time - true_ms) * (1 + ppm / 1e6)`.
#[derive(Clone, Copy)]
struct Anchor {
    true_ms: u64,
    local_ms: u64,
    ppm: i64,
}

impl MachineClock {
    pub fn new(truth: Arc<SimClock>) -> MachineClock {
        let now = truth.now_ms();
        MachineClock {
            truth,
            state: Mutex::new(Anchor {
                true_ms: now,
                local_ms: now,
                ppm: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Anchor> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn local_at(anchor: Anchor, true_now: u64) -> u64 {
        let elapsed = true_now.saturating_sub(anchor.true_ms) as i128;
        let local =
            anchor.local_ms as i128 + elapsed * (1_000_000 + anchor.ppm as i128) / 1_000_000;
        local.max(0) as u64
    }

    /// Re-anchors at the current instant, then lets `change` adjust the anchor.
    fn adjust(&self, change: impl FnOnce(&mut Anchor)) {
        let true_now = self.truth.now_ms();
        let mut anchor = self.lock();
        let local = MachineClock::local_at(*anchor, true_now);
        *anchor = Anchor {
            true_ms: true_now,
            local_ms: local,
            ppm: anchor.ppm,
        };
        change(&mut anchor);
    }

    /// Steps the clock by `delta_ms` (negative: back; never below the epoch 0).
    pub fn jump(&self, delta_ms: i64) {
        self.adjust(|a| a.local_ms = a.local_ms.saturating_add_signed(delta_ms));
    }

    /// From now on the clock runs `ppm` parts per million fast (negative: slow).
    pub fn drift(&self, ppm: i64) {
        self.adjust(|a| a.ppm = ppm.max(-999_999));
    }

    /// Back to true time, running at the true rate (a healed clock, as after an NTP step).
    pub fn reset(&self) {
        let true_now = self.truth.now_ms();
        *self.lock() = Anchor {
            true_ms: true_now,
            local_ms: true_now,
            ppm: 0,
        };
    }
}

impl Clock for MachineClock {
    fn now_ms(&self) -> u64 {
        MachineClock::local_at(*self.lock(), self.truth.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_clock_jumps_and_drifts_from_true_time_until_reset() {
        let truth = Arc::new(SimClock {
            start: tokio::time::Instant::now(),
            epoch_ms: 1_000_000,
        });
        let clock = MachineClock::new(truth.clone());
        assert_eq!(clock.now_ms(), 1_000_000);
        clock.jump(-30_000);
        assert_eq!(clock.now_ms(), 970_000);
        clock.drift(100_000); // 10 % fast
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(clock.now_ms(), 971_100);
        clock.jump(5_000);
        assert_eq!(clock.now_ms(), 976_100);
        clock.reset();
        assert_eq!(clock.now_ms(), truth.now_ms());
        clock.jump(-5_000_000);
        assert_eq!(clock.now_ms(), 0, "never below the epoch");
    }
}
