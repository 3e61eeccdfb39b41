//! porch-agent: the program on each managed host.
//!
//! It keeps one session (a gRPC bidirectional stream, `proto/agent.proto`) with one
//! orchestrator node and fails over to the next URL when the session is lost
//! ([`session::Agent`]). Every transaction it accepts goes into the [`spool`] before it runs,
//! so a transaction runs at most once however often it is requested, and its result is re-sent
//! on every new session until the cluster acknowledges it. The [`runner`] does the work:
//! `puppet agent --onetime ...` (paths and identity from `puppet config print`, results from the
//! run's summary and report: [`runner::puppet`]), a command, or a seeded simulation.
//!
//! A request carrying a task runs that task instead ([`task`]): its file fetched over the session
//! by content hash, checked, cached, run with its parameters on stdin and/or in `PT_*` variables.
//!
//! Sessions run over mutual TLS with the host's Puppet certificate ([`tls_flags`] loads and
//! checks it at start; [`transport`] dials `https://` URLs through porch-tls's connector and
//! turns TLS failures into words); plain HTTP only with `--insecure-http`.
//!
//! Entry points: [`args::AgentArgs`] + [`args::run_agent`] (used by `porch-agent` and
//! `porch agent`).

pub mod args;
pub mod codec;
pub mod runner;
pub mod session;
pub mod spool;
pub mod spool_store;
pub mod task;
pub mod tls_flags;
pub mod transport;

/// Generated gRPC code for the agent protocol.
// A result is the largest message and the rarest; boxing it would only move the allocation.
#[allow(clippy::large_enum_variant)]
pub mod proto {
    tonic::include_proto!("porch.agent.v1");
}

pub use args::{AgentArgs, run_agent};
