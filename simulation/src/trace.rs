//! What happened in a run, in order, with simulated time: the material of the checkers, of
//! the failure report, and of the trace hash that proves a seed replays bit for bit.

use std::fmt::Write;

#[derive(Default)]
pub struct Trace {
    lines: Vec<String>,
}

impl Trace {
    pub fn push(&mut self, time_ms: u64, line: String) {
        self.lines.push(format!(
            "{:>8}.{:03} {line}",
            time_ms / 1000,
            time_ms % 1000
        ));
    }

    /// FNV-1a over every line.
    pub fn hash(&self) -> u64 {
        let mut hash = 0xcbf29ce484222325u64;
        for line in &self.lines {
            for byte in line.bytes().chain(std::iter::once(b'\n')) {
                hash ^= byte as u64;
                hash = hash.wrapping_mul(0x100000001b3);
            }
        }
        hash
    }

    /// The last `count` lines, for a failure report.
    pub fn tail(&self, count: usize) -> String {
        let mut out = String::new();
        for line in self
            .lines
            .iter()
            .skip(self.lines.len().saturating_sub(count))
        {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Prints simulated time since the run began, so two logs of one seed diff line by line.
struct SimulatedTime {
    start: tokio::time::Instant,
}

impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let ms = self.start.elapsed().as_millis();
        write!(w, "{:>6}.{:03}", ms / 1000, ms % 1000)
    }
}

/// The run's log (call inside the run's runtime): `PORCH_LOG` filters it (default: nothing), simulated time stamps it.
pub fn log_subscriber() -> impl tracing::Subscriber + Send + Sync {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(SimulatedTime {
            start: tokio::time::Instant::now(),
        })
        .with_ansi(false)
        .with_target(true)
        .with_writer(std::io::stderr)
        .finish()
}
