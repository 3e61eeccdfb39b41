//! The agent's TLS over real sockets on 127.0.0.1: flags checked at start, sessions over
//! mutual TLS to a small AgentSessions server, and the words an agent logs when TLS or the
//! server refuses it. One test binary, one module per subject.

mod common;
mod flags;
mod sessions;
