//! porch-simulation: the real porch cluster — openraft, the state machine, the scheduler,
//! delivery, agent sessions and agents — in one process, on one thread, under simulated
//! time, with a seeded random source and an in-memory network that can cut links and crash
//! nodes. One seed is one run; the same seed replays the same run (its `trace hash`).
//!
//! - [`net`]: the network: node routers served over in-memory pipes; cuts and crashes.
//! - [`world`]: nodes (real `porch_node::server::build` on `SimDisk`) and agents (real
//!   `porch_agent` sessions with the seeded runner).
//! - [`run`]: the workload, the fault schedule, the safety and liveness phases.
//! - [`schedules`]: the clients' scheduled deploys.
//! - [`tasks`]: the task jobs of the workload: code, redeploys, generated parameters.
//! - [`invariants`]: one checker per property.
//! - [`knobs`]: queue capacities, batch sizes and raft timings drawn per seed.
//! - [`history`], [`linearizability`]: what clients were told, checked against a model.
//! - [`machine_clock`]: each machine's wall clock, with jumps and drift.
//! - [`cli`]: `porch sim --seed N | --seeds A..B`.

#[cfg(not(tokio_unstable))]
compile_error!(
    "the simulation needs --cfg tokio_unstable (set in .cargo/config.toml) to seed tokio's scheduler"
);

pub mod access;
pub mod cli;
pub mod config;
pub mod faults;
pub mod history;
pub mod invariants;
pub mod knobs;
pub mod linearizability;
pub mod machine_clock;
pub mod models;
pub mod net;
pub mod run;
pub mod schedules;
pub mod spool_disk;
pub mod tasks;
pub mod trace;
pub mod workload;
pub mod world;
