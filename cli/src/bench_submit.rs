//! `porch bench submit`: job submissions per second and latency on a local 3-node cluster with
//! durable storage, at several client concurrencies; optionally etcd 3.4 side by side (puts of
//! the same size through etcd's native gRPC client), and leader failover time. Results are
//! printed as Markdown tables for BENCHMARKS.md. A benchmark, not a test: it asserts nothing.
//!
//! By default both systems run secure: porch's nodes serve TLS from a throwaway CA
//! ([`crate::bench_cluster::BenchPki`]) and every request carries the first admin's token;
//! etcd's members speak mutual TLS to clients and peers with certificates from the same CA.
//! `--insecure-http` runs both in plain text (porch still checks tokens), to show what TLS
//! costs each of them. The clients share one HTTP/2 connection per node in both systems
//! ([`load::Target`]).

mod etcd_cluster;
mod failover;
mod load;

use crate::bench_cluster::{BenchPki, PorchCluster, tempfile_dir, wait_ready};
use crate::bench_cmd::SubmitArgs;
use etcd_cluster::EtcdCluster;
use load::{Stats, Target, load};
use std::time::Duration;

/// Load before the measured rounds: connections opened, caches warm.
const WARMUP_CLIENTS: usize = 8;
const WARMUP_SECONDS: u64 = 2;

pub async fn submit(args: SubmitArgs) -> Result<(), String> {
    let clients = parse_clients(&args.clients)?;
    let dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => tempfile_dir()?,
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pki = if args.insecure_http {
        None
    } else {
        Some(BenchPki::create(&dir.join("pki"))?)
    };
    println!(
        "Transport: {}",
        match pki {
            Some(_) => {
                "TLS (porch: HTTPS + token, TLS between nodes; etcd: mutual TLS for clients and peers)"
            }
            None => "plain (--insecure-http; porch still checks the token)",
        }
    );

    let mut cluster =
        PorchCluster::new(&dir, args.base_port, args.server_arg.clone(), pki.as_ref())?;
    cluster.spawn_all()?;
    let token = cluster.admin_token(Duration::from_secs(60)).await?;
    let http = cluster.client(Some(&token), Duration::from_secs(10))?;
    for url in cluster.urls() {
        if !wait_ready(
            &http,
            &url,
            "/orchestrator/v1/jobs",
            Duration::from_secs(30),
        )
        .await
        {
            return Err(format!(
                "porch at {url} did not become ready; see {}",
                dir.display()
            ));
        }
    }
    println!("porch: 3 nodes, sled in {}", dir.display());
    let leader = cluster
        .leader(&http)
        .await
        .ok_or("porch: no node knows a leader")?;
    let urls = cluster.urls();
    let order = args.first_node.order(leader, urls.len());
    println!(
        "porch: the first client talks to node {} ({:?}; node {} leads)",
        order[0] + 1,
        args.first_node,
        leader + 1
    );
    let porch = Target::Porch {
        http,
        urls: order.iter().map(|&i| urls[i].clone()).collect(),
    };
    let _ = load(&porch, WARMUP_CLIENTS, WARMUP_SECONDS).await;
    let mut porch_rows = Vec::new();
    for &c in &clients {
        porch_rows.push(load(&porch, c, args.seconds).await);
    }
    drop(porch);
    print_table(
        "porch job submissions (POST /command/deploy, 202 after commit)",
        &porch_rows,
    );
    if args.failovers > 0 {
        let mut times_ms = failover::porch_failovers(&mut cluster, &token, args.failovers).await?;
        times_ms.sort_by(f64::total_cmp);
        if let (Some(min), Some(max)) = (times_ms.first(), times_ms.last()) {
            println!(
                "\nporch leader failover (kill -9 → write accepted via a survivor), {} runs: median {:.0} ms, min {min:.0} ms, max {max:.0} ms",
                times_ms.len(),
                times_ms[times_ms.len() / 2],
            );
        }
    }
    // The nodes must be gone before etcd binds nearby ports and takes the CPU.
    cluster.kill_all().await;

    if args.etcd {
        let mut etcd = EtcdCluster::start(&args.etcd_bin, &dir, args.base_port, pki.as_ref())?;
        let mut members = etcd
            .member_clients(Duration::from_secs(30))
            .await
            .map_err(|e| format!("{e}; see {}", dir.display()))?;
        let leader = EtcdCluster::leader(&mut members).await?;
        let order = args.first_node.order(leader, members.len());
        println!(
            "etcd: the first client talks to member {} ({:?}; member {} leads)",
            order[0] + 1,
            args.first_node,
            leader + 1
        );
        let target = Target::Etcd {
            members: order.iter().map(|&i| members[i].kv_client()).collect(),
        };
        let _ = load(&target, WARMUP_CLIENTS, WARMUP_SECONDS).await;
        let mut etcd_rows = Vec::new();
        for &c in &clients {
            etcd_rows.push(load(&target, c, args.seconds).await);
        }
        print_table(
            "etcd 3.4 puts of the same size (gRPC KV.Put, one client per member)",
            &etcd_rows,
        );
        print_comparison(&porch_rows, &etcd_rows);
        drop((target, members));
        etcd.stop().await;
    }
    // A temporary directory of our own is removed (hundreds of MB of sled files per run);
    // one the user named is kept for inspection.
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn parse_clients(list: &str) -> Result<Vec<usize>, String> {
    let clients: Vec<usize> = list
        .split(',')
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|_| format!("--clients: '{c}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    if clients.contains(&0) {
        return Err("--clients: concurrencies must be positive".into());
    }
    Ok(clients)
}

fn print_table(name: &str, rows: &[Stats]) {
    println!("\n{name}\n");
    println!("| clients | ops/s | p50 ms | p99 ms | ops | errors |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for s in rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            s.clients,
            s.rate(),
            s.p50_ms,
            s.p99_ms,
            s.ops,
            s.errors
        );
    }
}

/// The targets per concurrency: porch's throughput ≥ 1.2× etcd's, p99 ≤ etcd's.
fn print_comparison(porch: &[Stats], etcd: &[Stats]) {
    println!("\nporch vs etcd\n");
    println!(
        "| clients | porch ops/s | porch p50 ms | porch p99 ms | etcd ops/s | etcd p50 ms | etcd p99 ms | porch/etcd throughput | throughput ≥ 1.2× | p99 ≤ etcd's |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|");
    for (p, e) in porch.iter().zip(etcd) {
        let ratio = p.rate() / e.rate();
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {ratio:.2} | {} | {} |",
            p.clients,
            p.rate(),
            p.p50_ms,
            p.p99_ms,
            e.rate(),
            e.p50_ms,
            e.p99_ms,
            if ratio >= 1.2 { "yes" } else { "no" },
            if p.p99_ms <= e.p99_ms { "yes" } else { "no" },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_list_refuses_zero_and_words() {
        assert_eq!(parse_clients("1, 64,256"), Ok(vec![1, 64, 256]));
        assert!(parse_clients("0").unwrap_err().contains("positive"));
        assert!(parse_clients("8,x").unwrap_err().contains("'x'"));
    }
}
