//! Access control on the node: credentials (hashing, tokens), the caller of each request
//! ([`principal::Principal`], checked by a middleware), the first admin, and the recorder that
//! batches refusals into the replicated audit log. The rules themselves live in
//! `porch_core::access`, where `apply` uses them too.

pub mod audit_recorder;
pub mod bootstrap;
pub mod credentials;
pub mod principal;
