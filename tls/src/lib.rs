//! TLS for porch from Puppet's CA.
//!
//! porch is secure by default: every node, agent and API client talks TLS with certificates
//! from the Puppet CA the site already runs, read from Puppet's ssldir.
//!
//! - [`TlsPaths`] says where the certificate, key, CA bundle and CRL are
//!   ([`TlsPaths::from_ssldir`] for Puppet's layout).
//! - [`TlsIdentity`] loads and cross-checks them, builds the rustls server and client
//!   configurations, and swaps in new ones when the files change ([`TlsIdentity::spawn_reloader`]):
//!   a certificate revoked in a new CRL is refused at the next handshake, without a restart.
//! - [`TlsListener`] serves axum (and tonic routes inside it) over TLS; each connection's
//!   [`PeerInfo`] carries the verified client certname. [`PlainListener`] is the
//!   `--insecure-http` twin with the same `PeerInfo`.
//! - [`TlsConnector`] dials peers for tonic channels with the identity's current configuration.
//! - [`client_config_trusting`] is for clients without a certificate (the CLI with a token).
//! - [`describe_tls_error`] turns a TLS failure buried in hyper/tonic/reqwest errors into a
//!   sentence, so no one is told "connection refused" when a certificate was refused.
//! - [`dev_ca`] is a throwaway CA writing Puppet ssldirs, for `porch dev` and tests.
//!
//! Cryptography is rustls with the ring provider; there is no OpenSSL anywhere.

mod cert_info;
mod connector;
mod describe;
pub mod dev_ca;
mod error;
mod identity;
mod listener;
mod material;
mod paths;
mod verifier;

pub use connector::{TCP_CONNECT_TIMEOUT, TlsConnector};
pub use describe::describe_tls_error;
pub use error::{FileRole, TlsError};
pub use identity::{TlsIdentity, client_config_trusting};
pub use listener::{
    PeerInfo, PlainListener, TLS_HANDSHAKE_TIMEOUT, TLS_HANDSHAKES_IN_FLIGHT_MAX, TlsListener,
};
pub use paths::{TlsPaths, default_ssldir};
