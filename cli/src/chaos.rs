//! `porch chaos`: a seeded fault schedule against a local cluster of real processes — `porch
//! server` nodes over TLS, `porch agent`s running a real command — while a workload submits
//! jobs; then it heals everything, waits for the cluster to converge and judges what happened.
//!
//! - [`schedule`]: the faults, a pure function of the seed (the replay key);
//! - [`network`]: namespaces, a bridge and iptables cuts (root); [`delay_proxy`]: slow links;
//! - [`processes`]: nodes and agents, SIGSTOP/SIGCONT, kill -9 and restart;
//! - [`fault_driver`] applies and heals the schedule's faults on them;
//! - [`workload`] submits jobs, [`observe`] waits for convergence and reads the cluster;
//! - [`history`] is what was recorded, [`checker`] the verdict on it (pure, tested with
//!   histories known to be wrong);
//! - [`leftovers`]: the registry of live runs behind `--cleanup`.
//!
//! Everything it breaks is healed by guards' `Drop` (namespaces, rules, paused or running
//! processes), which also runs on Ctrl+C, SIGTERM and panics; children die with this process.

pub mod checker;
pub mod delay_proxy;
pub mod fault_driver;
pub mod history;
pub mod leftovers;
pub mod network;
pub mod observe;
pub mod processes;
pub mod schedule;
pub mod workload;

mod run;

pub use run::{ChaosArgs, run_chaos};
