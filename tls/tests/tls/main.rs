//! porch-tls over real sockets on 127.0.0.1 with real TLS: one test binary, one module per
//! subject (a binary per file would relink the whole dependency tree for each).

mod alpn;
mod common;
mod handshakes;
mod load_errors;
mod reload;
mod tonic_connector;
