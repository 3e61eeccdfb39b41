//! Parse + graph + plan an environment of 2,000 application instances over 10,000 nodes.
//! `cargo run --release -p porch-lang --bin lang_bench` — prints the median of 5 runs and the
//! process's peak resident memory. Targets (issue 4): < 1 s and < 200 MB.

use porch_lang::Environment;
use std::path::PathBuf;
use std::time::Instant;

const INSTANCES: usize = 2_000;
const COMPONENTS: usize = 5;

fn sources() -> Vec<(PathBuf, String)> {
    let app = r#"application bench (String $tier = 'x') {
  bench::db { $name: export => Sql["db-${name}"] }
  bench::cache { $name: export => Cache["cache-${name}"] }
  bench::app { $name: consume => [Sql["db-${name}"], Cache["cache-${name}"]], export => Http["app-${name}"] }
  bench::lb { $name: require => Http["app-${name}"] }
  bench::mon { $name: require => [Http["app-${name}"], Sql["db-${name}"]] }
}
"#;
    let mut site = String::from("site {\n");
    for i in 0..INSTANCES {
        site.push_str(&format!("  bench {{ 'i{i}':\n    nodes => {{\n"));
        for (c, name) in ["Db", "Cache", "App", "Lb", "Mon"].iter().enumerate() {
            site.push_str(&format!(
                "      Node['n{}.example.com'] => Bench::{name}['i{i}'],\n",
                i * COMPONENTS + c
            ));
        }
        site.push_str("    },\n  }\n");
    }
    site.push_str("}\n");
    vec![
        (
            PathBuf::from("modules/bench/lib/puppet/type/sql.rb"),
            ":is_capability => true".into(),
        ),
        (PathBuf::from("modules/bench/manifests/init.pp"), app.into()),
        (PathBuf::from("manifests/site.pp"), site),
    ]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let sources = sources();
    let bytes: usize = sources.iter().map(|(_, t)| t.len()).sum();
    let mut times = Vec::new();
    let mut nodes = 0;
    for _ in 0..5 {
        let input = sources.clone();
        let start = Instant::now();
        let env = match Environment::from_sources("bench", input) {
            Ok(env) => env,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        let report = match env.plan_application("Bench") {
            Ok(report) => report,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        nodes = report.plan.len();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{INSTANCES} instances, {nodes} nodes, {:.1} MB of manifests: parse + graph + plan median {:.0} ms (min {:.0}, max {:.0}); peak RSS {:.0} MB",
        bytes as f64 / 1e6,
        times[2],
        times[0],
        times[4],
        peak_rss_mb()
    );
}
