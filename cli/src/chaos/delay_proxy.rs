//! A TCP proxy for one direction of a peer link (node `i`'s connections to node `j`) that
//! delays every byte by an adjustable latency: a slow link, which `tc netem` would give if
//! this machine's kernel had it. Bytes keep their order; throughput is not limited, only
//! delayed (each chunk read is stamped and written once its time has come).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Connections one proxy carries at once; more are refused (closed at once).
const CONNECTIONS_MAX: usize = 64;
/// Chunks read ahead of the delayed writer, per direction of a connection.
const CHUNKS_IN_FLIGHT_MAX: usize = 256;
const CHUNK_BYTES: usize = 16 * 1024;

pub struct DelayProxy {
    listen: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    /// Dropping the proxy aborts the accept loop and every connection.
    _tasks: JoinSet<()>,
}

impl DelayProxy {
    /// Listens on `listen_ip` (a free port) and forwards each connection to `target`, dialling
    /// from `source_ip`.
    pub async fn start(
        listen_ip: IpAddr,
        source_ip: IpAddr,
        target: SocketAddr,
    ) -> Result<DelayProxy, String> {
        let listener = TcpListener::bind((listen_ip, 0))
            .await
            .map_err(|e| format!("delay proxy: cannot listen on {listen_ip}: {e}"))?;
        let listen = listener.local_addr().map_err(|e| e.to_string())?;
        let delay_ms = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, source_ip, target, delay_ms.clone()));
        Ok(DelayProxy {
            listen,
            delay_ms,
            _tasks: tasks,
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    source_ip: IpAddr,
    target: SocketAddr,
    delay_ms: Arc<AtomicU64>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= CONNECTIONS_MAX {
            continue; // dropped: closed
        }
        connections.spawn(carry(inbound, source_ip, target, delay_ms.clone()));
    }
}

async fn carry(
    inbound: TcpStream,
    source_ip: IpAddr,
    target: SocketAddr,
    delay_ms: Arc<AtomicU64>,
) {
    let outbound = async {
        let socket = match source_ip {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source_ip, 0))?;
        socket.connect(target).await
    };
    let Ok(outbound) = outbound.await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Either direction ending (EOF or error) ends the connection, as a cut cable would.
    tokio::select! {
        _ = pump(in_read, out_write, delay_ms.clone()) => {}
        _ = pump(out_read, in_write, delay_ms) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    let (sender, mut receiver) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT_MAX);
    let reader = async move {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sender
                        .send((Instant::now(), buffer[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((read_at, chunk)) = receiver.recv().await {
            let delay = Duration::from_millis(delay_ms.load(Ordering::Relaxed));
            tokio::time::sleep_until(read_at + delay).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes every connection's bytes back.
    async fn echo_server() -> SocketAddr {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = server.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(proxy: &DelayProxy, bytes: &[u8]) -> (Vec<u8>, Duration) {
        let mut client = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let started = std::time::Instant::now();
        client.write_all(bytes).await.unwrap();
        let mut reply = vec![0u8; bytes.len()];
        client.read_exact(&mut reply).await.unwrap();
        (reply, started.elapsed())
    }

    #[tokio::test]
    async fn bytes_pass_in_order_and_a_round_trip_costs_two_delays() {
        let target = echo_server().await;
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let proxy = DelayProxy::start(loopback, loopback, target).await.unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (reply, _) = round_trip(&proxy, &payload).await;
        assert!(
            reply == payload,
            "bytes changed or reordered through the proxy"
        );

        proxy.set_delay(Duration::from_millis(150));
        let (reply, elapsed) = round_trip(&proxy, b"ab").await;
        assert_eq!(reply, b"ab");
        assert!(
            elapsed >= Duration::from_millis(300),
            "round trip took {elapsed:?}"
        );
    }
}
