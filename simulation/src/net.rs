//! The simulated network: every node's real router (raft RPC, cluster RPC, agent sessions)
//! served over in-memory pipes, with links that can be cut. A cut link fails the next read or
//! write on every connection across it (as a TCP reset would), and a crashed node's
//! connections fail the same way; new connections across a cut are refused.

use porch_raft::network::Dialer;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tonic::transport::{Channel, Endpoint};

/// Bytes buffered in one direction of a simulated connection.
const PIPE_BYTES: usize = 256 * 1024;

#[derive(Default)]
struct State {
    /// addr -> (incarnation, router) of nodes that are up.
    nodes: BTreeMap<String, (u64, axum::Router)>,
    /// Cut links, one direction each: (from, to).
    cut: BTreeSet<(String, String)>,
}

#[derive(Clone, Default)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
}

impl SimNet {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn up(&self, addr: &str, incarnation: u64, router: axum::Router) {
        self.lock()
            .nodes
            .insert(addr.to_string(), (incarnation, router));
    }

    pub fn down(&self, addr: &str) {
        self.lock().nodes.remove(addr);
    }

    pub fn cut(&self, from: &str, to: &str) {
        self.lock().cut.insert((from.to_string(), to.to_string()));
    }

    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    fn alive(&self, from: &str, to: &str, incarnation: u64) -> bool {
        let state = self.lock();
        let linked = !state.cut.contains(&(from.to_string(), to.to_string()))
            && !state.cut.contains(&(to.to_string(), from.to_string()));
        linked && state.nodes.get(to).map(|(i, _)| *i) == Some(incarnation)
    }

    /// Opens a connection from `from` to the node at `to`.
    fn connect(&self, from: &str, to: &str) -> io::Result<SimStream> {
        let (incarnation, router) = {
            let state = self.lock();
            if state.cut.contains(&(from.to_string(), to.to_string())) {
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "link cut"));
            }
            match state.nodes.get(to) {
                Some((incarnation, router)) => (*incarnation, router.clone()),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "node down",
                    ));
                }
            }
        };
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        let server_stream = SimStream {
            inner: server,
            net: self.clone(),
            from: from.to_string(),
            to: to.to_string(),
            incarnation,
        };
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(server_stream), service)
                .await;
        });
        Ok(SimStream {
            inner: client,
            net: self.clone(),
            from: from.to_string(),
            to: to.to_string(),
            incarnation,
        })
    }

    pub fn dialer(&self, from: &str) -> Arc<dyn Dialer> {
        Arc::new(SimDialer {
            net: self.clone(),
            from: from.to_string(),
        })
    }
}

/// One end of a simulated connection; fails once its link is cut or its peer restarted.
pub struct SimStream {
    inner: DuplexStream,
    net: SimNet,
    from: String,
    to: String,
    incarnation: u64,
}

impl SimStream {
    fn check(&self) -> io::Result<()> {
        if self.net.alive(&self.from, &self.to, self.incarnation) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "simulated connection lost",
            ))
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct SimDialer {
    net: SimNet,
    from: String,
}

impl Dialer for SimDialer {
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let net = self.net.clone();
        let from = self.from.clone();
        let to = addr.to_string();
        let endpoint =
            Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?;
        Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri| {
                let result = net.connect(&from, &to).map(hyper_util::rt::TokioIo::new);
                async move { result }
            })),
        )
    }
}
