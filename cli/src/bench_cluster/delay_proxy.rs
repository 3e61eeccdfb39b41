//! A TCP proxy that delays the bytes of chosen connections by a fixed one-way latency in each
//! direction: a link to another datacenter on loopback, where `tc netem` is not available.
//!
//! Which connections cross the link is decided per accepted connection by [`Crossing`]: all
//! of them, or only those opened by one process — so a voter's one address can be near for
//! the other voters and far for a learner in "another datacenter" (openraft's membership
//! gives each member one address for every peer).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction before the reader waits (bounds the proxy's memory).
const CHUNKS_IN_FLIGHT_MAX: usize = 1024;

/// Which accepted connections are delayed.
#[derive(Clone, Debug)]
pub enum Crossing {
    All,
    /// Only connections opened by the process `pid`.
    FromProcess(u32),
}

impl Crossing {
    fn applies_to(&self, peer: SocketAddr) -> bool {
        match self {
            Crossing::All => true,
            Crossing::FromProcess(pid) => local_port_inode(peer.port())
                .is_some_and(|inode| socket_inodes(*pid).contains(&inode)),
        }
    }
}

/// The inode of the loopback TCP socket bound to local port `port` (`/proc/net/tcp`).
fn local_port_inode(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1)?.ends_with(&wanted)).then(|| fields.get(9)?.parse().ok())?
    })
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Starts a proxy on 127.0.0.1:`listen_port` to 127.0.0.1:`upstream_port`; it runs until
/// the returned task is aborted.
pub async fn start(
    listen_port: u16,
    upstream_port: u16,
    one_way: Duration,
    crossing: Crossing,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = TcpListener::bind(("127.0.0.1", listen_port))
        .await
        .map_err(|e| format!("delay proxy on port {listen_port}: {e}"))?;
    Ok(tokio::spawn(async move {
        while let Ok((client, peer)) = listener.accept().await {
            let crossing = crossing.clone();
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                if crossing.applies_to(peer) {
                    relay_delayed(client, upstream, one_way).await;
                } else {
                    let (mut client, mut upstream) = (client, upstream);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    }))
}

async fn relay_delayed(client: TcpStream, upstream: TcpStream, one_way: Duration) {
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let there = pump(client_read, upstream_write, one_way);
    let back = pump(upstream_read, client_write, one_way);
    tokio::join!(there, back);
}

/// Copies `from` to `to`, each chunk written `delay` after it was read, in order.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT_MAX);
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buffer[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
