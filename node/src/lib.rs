//! porch-node: one orchestrator node.
//!
//! - [`server`]: assembles a node from its seams ([`server::NodeEnv`]: clock, dialer, disk) and
//!   serves raft RPC, cluster RPC and the HTTP API on one address.
//! - [`consensus`]: commit through the leader from any node; linearizable read barrier.
//! - [`membership`]: voters, learners, datacenter labels, drains, leadership transfer;
//!   [`cluster_status`]: the leader's view of every member joined with each member's own.
//! - [`api`]: PE's Orchestrator API v1 over the applied state.
//! - [`planner`]: a job's target resolved into its plan, once, before proposing; `--query`
//!   targets through [`puppetdb`] (`--puppetdb-url`) or, without it, [`query`]'s certname matcher.
//! - [`access`]: tokens, the caller of each request, the first admin, audit batching.
//! - [`reaction`]: the node's reactions — delivery of committed starts to local agents, the
//!   leader's scheduling and unreachable expiry, session reconciliation — as one pure step
//!   returning effects, and the one driver that carries them out.
//! - [`housekeeping`]: leader-only timers; [`format_upgrade`]: raising the format version
//!   the cluster writes once every member reads it.
//! - [`schedule_firing`]: the leader fires scheduled jobs.
//!
//! Data flow of a submission: HTTP `POST /command/deploy` on any node → validated, plan
//! resolved → `Consensus::write` → (forwarded to) the leader, which stamps the time and
//! proposes → committed → applied on every node by `porch_core::ClusterState::apply` → 202.

pub mod access;
pub mod agents;
pub mod api;
pub mod blocking;
pub mod clock;
pub mod cluster_service;
pub mod cluster_status;
pub mod config;
pub mod consensus;
pub mod console;
pub mod format_upgrade;
pub mod housekeeping;
pub mod identity;
pub mod membership;
pub mod metrics;
pub mod peer_auth;
mod pending_proposals;
pub mod planner;
pub mod puppetdb;
pub mod query;
pub mod reaction;
pub mod schedule_firing;
pub mod server;
pub mod tasks;
