//! `porch server` and `porch dev`: the orchestrator node and a local three-node cluster.

use clap::Args;
use porch_node::config::{NodeConfig, RaftTimings, parse_initial_cluster, validate_addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: u64,
    /// Directory for this node's raft log, snapshots and identity (sled).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address to listen on: raft RPC, agent sessions and the HTTP API share it.
    #[arg(long)]
    pub listen: String,
    /// Address other nodes and clients use to reach this one (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// The founding members, `1=host:port,2=host:port,3=host:port`. Used on first start only;
    /// the lowest id initialises the cluster. A node not listed waits to be added.
    #[arg(long)]
    pub initial_cluster: String,
    /// Raft heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Minimum election timeout; the maximum is twice this.
    #[arg(long, default_value_t = 500)]
    pub election_timeout_ms: u64,
    /// Take a snapshot (and allow purging the log) every this many applied entries. Each
    /// snapshot encodes the whole state on every node at about the same time, so a short
    /// cadence costs throughput and tail latency under load (etcd 3.4 also defaults to 100,000).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot for slow followers.
    #[arg(long, default_value_t = 1000)]
    pub logs_kept: u64,
    /// Runs in flight over all jobs, cluster-wide.
    #[arg(long, default_value_t = 250)]
    pub runs_in_flight_max: usize,
    /// Seconds an agent may stay disconnected before its run is errored (unreachable).
    #[arg(long, default_value_t = 30)]
    pub agent_timeout_secs: u64,
    /// Puppet code directory (environments/<env>/manifests, modules).
    #[arg(long, default_value = "/etc/puppetlabs/code")]
    pub codedir: PathBuf,
    /// PuppetDB for `--query` targets, `https://host:8081`: full PQL (facts, resources,
    /// inventory), over TLS with this node's certificate. Without it, queries match certnames
    /// of the agents the cluster knows.
    #[arg(long)]
    pub puppetdb_url: Option<String>,
    /// Seconds a PuppetDB query may take, connecting included.
    #[arg(long, default_value_t = 30)]
    pub puppetdb_timeout_secs: u64,
    /// Ended jobs (with their events and reports) are dropped this long after they ended, as
    /// PE's `job-prune-threshold`: "30d", "12h"; a bare number is days.
    #[arg(long, default_value = "30d")]
    pub job_prune_threshold: String,
    /// At most this many ended jobs are kept; beyond, the oldest are dropped first.
    #[arg(long, default_value_t = 100_000)]
    pub jobs_kept_max: u64,
    /// Leave API request counts and latencies (by route and status) out of /metrics; the
    /// raft, job and agent metrics stay. What the request metrics cost is measured with it
    /// (BENCHMARKS.md).
    #[arg(long)]
    pub no_request_metrics: bool,
    /// This node's datacenter (a label: letters, digits, '-', '_', '.'), kept with its
    /// membership and shown by `porch cluster status`.
    #[arg(long)]
    pub datacenter: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `--job-prune-threshold`: a duration, or a number of days as PE's setting counts.
fn parse_prune_threshold(text: &str) -> Result<Duration, String> {
    let duration = match text.trim().parse::<u64>() {
        Ok(days) => Duration::from_secs(days.saturating_mul(24 * 3600)),
        Err(_) => humantime::parse_duration(text.trim()).map_err(|e| {
            format!(
                "--job-prune-threshold {text:?}: {e} (e.g. \"30d\", \"12h\" or a number of days)"
            )
        })?,
    };
    if duration.is_zero() {
        return Err("--job-prune-threshold must be positive".into());
    }
    Ok(duration)
}

/// Where a node's certificate comes from: Puppet's ssldir layout, or files named one by one.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Puppet's ssldir: certs/<certname>.pem, private_keys/<certname>.pem, certs/ca.pem,
    /// crl.pem (default: Puppet's, /etc/puppetlabs/puppet/ssl for root).
    #[arg(long)]
    pub ssldir: Option<PathBuf>,
    /// This node's certname (default: the certname of its --initial-cluster entry).
    #[arg(long)]
    pub certname: Option<String>,
    /// This node's certificate (PEM); overrides the ssldir's.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM); overrides the ssldir's.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The CA to trust (PEM); overrides the ssldir's.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// The CA's revocation list (PEM); overrides the ssldir's.
    #[arg(long)]
    pub crl: Option<PathBuf>,
    /// Serve plain HTTP without TLS: traffic unencrypted, agents and peers unauthenticated
    /// (API tokens are still required). For experiments only.
    #[arg(long)]
    pub insecure_http: bool,
    /// Seconds between looks at the certificate and CRL files (changes apply without a restart).
    #[arg(long, default_value_t = 10)]
    pub tls_reload_secs: u64,
}

impl TlsArgs {
    /// The files to load, or `None` with `--insecure-http`.
    pub fn paths(&self, default_certname: &str) -> Result<Option<porch_tls::TlsPaths>, String> {
        let explicit = [&self.cert, &self.key, &self.cacert, &self.crl];
        if self.insecure_http {
            if self.ssldir.is_some() || explicit.iter().any(|f| f.is_some()) {
                return Err(
                    "--insecure-http serves no TLS: drop --ssldir/--cert/--key/--cacert/--crl"
                        .into(),
                );
            }
            return Ok(None);
        }
        let certname = self.certname.as_deref().unwrap_or(default_certname);
        let ssldir = self
            .ssldir
            .clone()
            .unwrap_or_else(porch_tls::default_ssldir);
        let paths = porch_tls::TlsPaths::from_ssldir(&ssldir, certname).with_overrides(
            self.cert.as_deref(),
            self.key.as_deref(),
            self.cacert.as_deref(),
            self.crl.as_deref(),
        );
        Ok(Some(paths))
    }
}

impl ServerArgs {
    pub fn to_config(&self) -> Result<NodeConfig, String> {
        if self.id == 0 {
            return Err("--id: node ids start at 1".into());
        }
        validate_addr(&self.listen).map_err(|e| format!("--listen: {e}"))?;
        let initial_cluster = parse_initial_cluster(&self.initial_cluster)
            .map_err(|e| format!("--initial-cluster: {e}"))?;
        let advertise = match &self.advertise {
            Some(a) => {
                validate_addr(a).map_err(|e| format!("--advertise: {e}"))?;
                a.clone()
            }
            None => initial_cluster
                .get(&self.id)
                .cloned()
                .unwrap_or_else(|| self.listen.clone()),
        };
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms {
            return Err(format!(
                "--election-timeout-ms ({}) must be greater than --heartbeat-ms ({}), which must be positive",
                self.election_timeout_ms, self.heartbeat_ms
            ));
        }
        if self.snapshot_every == 0 {
            return Err("--snapshot-every must be positive".into());
        }
        if self.runs_in_flight_max == 0 {
            return Err("--runs-in-flight-max must be positive".into());
        }
        let mut config = NodeConfig::new(
            self.id,
            self.data_dir.clone(),
            self.listen.clone(),
            initial_cluster,
        );
        config.advertise = advertise;
        config.raft = RaftTimings {
            heartbeat_interval_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_ms,
            election_timeout_max_ms: self.election_timeout_ms * 2,
            snapshot_every_logs: self.snapshot_every,
            logs_kept_after_snapshot: self.logs_kept,
            ..RaftTimings::default()
        };
        config.runs_in_flight_max = self.runs_in_flight_max;
        config.agent_unreachable_timeout = Duration::from_secs(self.agent_timeout_secs);
        config.codedir = self.codedir.clone();
        if let Some(url) = &self.puppetdb_url {
            if self.puppetdb_timeout_secs == 0 {
                return Err("--puppetdb-timeout-secs must be positive".into());
            }
            config.puppetdb = Some(porch_node::puppetdb::PuppetDbConfig {
                url: porch_node::config::parse_puppetdb_url(url)
                    .map_err(|e| format!("--puppetdb-url: {e}"))?,
                query_timeout: Duration::from_secs(self.puppetdb_timeout_secs),
            });
        }
        config.tls = self
            .tls
            .paths(porch_raft::member_certname(&config.advertise))?;
        config.insecure_http = self.tls.insecure_http;
        config.tls_reload_every = Duration::from_secs(self.tls.tls_reload_secs.max(1));
        config.job_prune_threshold = parse_prune_threshold(&self.job_prune_threshold)?;
        config.jobs_kept_max = self.jobs_kept_max;
        config.request_metrics = !self.no_request_metrics;
        if let Some(label) = &self.datacenter {
            porch_node::config::validate_datacenter(label)
                .map_err(|e| format!("--datacenter: {e}"))?;
        }
        config.datacenter = self.datacenter.clone();
        Ok(config)
    }
}

pub async fn run_server(args: ServerArgs) -> ExitCode {
    let config = match args.to_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match porch_node::server::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Where the three nodes keep their data.
    #[arg(long, default_value = ".porch-dev")]
    pub data_dir: PathBuf,
    /// First port; nodes listen on this and the next two.
    #[arg(long, default_value_t = 8143)]
    pub base_port: u16,
    /// Puppet code directory for application targets (default: the shipped examples).
    #[arg(long)]
    pub codedir: Option<PathBuf>,
    /// Also start simulated agents (seeded run times, 10 % failures) for the example nodes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub agents: bool,
}

/// The nodes of the shipped example environment.
pub(crate) const EXAMPLE_NODES: [&str; 9] = [
    "db1.example.com",
    "app1.example.com",
    "lb1.example.com",
    "dev1.example.com",
    "cache1.example.com",
    "web1.example.com",
    "web2.example.com",
    "mon1.example.com",
    "blog1.example.com",
];

/// The dev cluster's TLS material and client settings under its data dir: a throwaway CA,
/// certificates for the three nodes and the example agents in one Puppet-style ssldir.
pub(crate) struct DevPki {
    pub(crate) ssldir: PathBuf,
    pub(crate) cacert: PathBuf,
}

pub(crate) fn dev_certname(id: usize) -> String {
    format!("porch-node{id}")
}

fn dev_pki(data_dir: &std::path::Path, agents: &[&str]) -> Result<DevPki, String> {
    local_pki(data_dir, 3, &[], agents)
}

/// A throwaway CA under `data_dir` and certificates for `nodes` nodes (`porch-node<id>`,
/// valid for loopback and `node_addresses`) and for `agents`, in one ssldir; certificates
/// already there are kept.
pub(crate) fn local_pki(
    data_dir: &std::path::Path,
    nodes: usize,
    node_addresses: &[String],
    agents: &[&str],
) -> Result<DevPki, String> {
    use porch_tls::dev_ca::{DevCa, Validity};
    let ssldir = data_dir.join("ssl");
    let ca = DevCa::open_or_create(&data_dir.join("ca")).map_err(|e| e.to_string())?;
    let mut hosts = vec!["127.0.0.1", "localhost", "::1"];
    hosts.extend(node_addresses.iter().map(String::as_str));
    let names: Vec<(String, &[&str])> = (1..=nodes)
        .map(|id| (dev_certname(id), hosts.as_slice()))
        .chain(agents.iter().map(|a| (a.to_string(), &hosts[..3])))
        .collect();
    for (name, hosts) in &names {
        if !ssldir.join("certs").join(format!("{name}.pem")).exists() {
            ca.issue(&ssldir, name, hosts, Validity::default())
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(DevPki {
        cacert: ssldir.join("certs").join("ca.pem"),
        ssldir,
    })
}

/// Logs in as the first admin with the credential node 1 wrote, for up to `within`.
pub(crate) async fn dev_admin_token(
    data_dir: &std::path::Path,
    url: &str,
    cacert: &std::path::Path,
    within: Duration,
) -> Result<String, String> {
    let credential = data_dir.join("node1").join("admin-credential");
    let tls = porch_tls::client_config_trusting(cacert, None).map_err(|e| e.to_string())?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTPS client: {e}"))?;
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let password = match porch_node::access::bootstrap::read_password_file(&credential) {
            Ok(password) => password,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let body = serde_json::json!({"login": "admin", "password": password, "lifetime": "7d", "label": "porch dev"});
        match http
            .post(format!("{url}/rbac-api/v1/auth/token"))
            .json(&body)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                let value: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
                if let Some(token) = value["token"].as_str() {
                    return Ok(token.to_string());
                }
                last = format!("unexpected login reply: {value}");
            }
            Ok(response) => last = format!("login answered {}", response.status()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Writes a file readable by this user only.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Starts three `porch server` processes on loopback and waits for Ctrl+C.
pub async fn run_dev(args: DevArgs) -> ExitCode {
    match dev(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn dev(args: DevArgs) -> Result<ExitCode, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the porch executable: {e}"))?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("{}: cannot create: {e}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    let agents: &[&str] = if args.agents { &EXAMPLE_NODES } else { &[] };
    let pki = dev_pki(&data_dir, agents)?;
    let ports: Vec<u16> = (0..3).map(|i| args.base_port.saturating_add(i)).collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}={}@127.0.0.1:{p}", i + 1, dev_certname(i + 1)))
        .collect::<Vec<_>>()
        .join(",");
    let codedir = args.codedir.clone().unwrap_or_else(default_codedir);
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let id = i + 1;
        let mut command = tokio::process::Command::new(&exe);
        command
            .arg("server")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(data_dir.join(format!("node{id}")))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--initial-cluster", &cluster])
            .arg("--ssldir")
            .arg(&pki.ssldir)
            .args(["--certname", &dev_certname(id)])
            .arg("--codedir")
            .arg(&codedir)
            .kill_on_drop(true);
        // Stopped with the dev cluster however it ends, even by SIGKILL: a node left behind
        // would hold its port and answer the next `porch dev` with a stale cluster.
        crate::child_process::dies_with_parent(&mut command, libc::SIGTERM);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        nodes.push(child);
    }
    let url_list: Vec<String> = ports
        .iter()
        .map(|p| format!("https://127.0.0.1:{p}"))
        .collect();
    let urls = url_list.join(",");
    let mut agent_processes = Vec::new();
    for (i, node) in agents.iter().enumerate() {
        let mut command = tokio::process::Command::new(&exe);
        command
            .arg("agent")
            .args([
                "--certname",
                node,
                "--service-url",
                &urls,
                "--runner",
                "simulate",
            ])
            .arg("--ssldir")
            .arg(&pki.ssldir)
            .args([
                "--simulate-seed",
                &(i + 1).to_string(),
                "--simulate-duration-ms",
                "500..3000",
            ])
            .args(["--simulate-failure-rate", "0.05"])
            .arg("--spool-dir")
            .arg(data_dir.join("agents").join(node))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        crate::child_process::dies_with_parent(&mut command, libc::SIGTERM);
        let child = command.spawn();
        match child {
            Ok(child) => agent_processes.push(child),
            Err(e) => eprintln!("warning: cannot start the agent of {node}: {e}"),
        }
    }
    let token_file = data_dir.join("token");
    let conf_file = data_dir.join("orchestrator.conf");
    // A node that cannot start (its port taken, its data unreadable) has said why on stderr;
    // waiting the login's full minute for it would only hide that.
    let login = tokio::select! {
        login = dev_admin_token(&data_dir, &url_list[0], &pki.cacert, Duration::from_secs(60)) => login,
        (id, how) = first_exit(&mut nodes) => return Err(node_exited(id, &how)),
    };
    match login {
        Ok(token) => {
            write_private(&token_file, &format!("{token}\n"))?;
            let conf = serde_json::json!({"options": {
                "service-url": url_list[0],
                "porch-service-urls": url_list,
                "cacert": pki.cacert,
                "token-file": token_file,
                "environment": "production",
            }});
            let text = serde_json::to_string_pretty(&conf).map_err(|e| e.to_string())?;
            std::fs::write(&conf_file, text + "\n")
                .map_err(|e| format!("{}: {e}", conf_file.display()))?;
        }
        Err(e) => eprintln!(
            "warning: could not log in as admin ({e}); log in yourself: porch access login --username admin"
        ),
    }
    println!("porch dev cluster: 3 nodes on {urls} (TLS from a throwaway CA)");
    if args.agents {
        println!(
            "  agents:   {} simulated, each with its own certificate ({})",
            EXAMPLE_NODES.len(),
            EXAMPLE_NODES.join(", ")
        );
    }
    println!("  data:     {}", data_dir.display());
    println!(
        "  CA:       {} (certificates in {})",
        pki.cacert.display(),
        pki.ssldir.display()
    );
    println!(
        "  admin:    {} (the first admin's password)",
        data_dir.join("node1").join("admin-credential").display()
    );
    println!(
        "  token:    {} (admin, 7 days); clients run from {} find it through {}",
        token_file.display(),
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        conf_file.display()
    );
    println!("  code:     {}", codedir.display());
    // The token travels in the fragment, which the browser never sends: the login page's
    // script posts it once and the session lives in an HttpOnly cookie from then on.
    match std::fs::read_to_string(&token_file) {
        Ok(token) => println!(
            "  console:  {}/console/login#token={} (logged in as admin; trust the CA above in your browser)",
            url_list[0],
            token.trim()
        ),
        Err(_) => println!("  console:  {}/console/", url_list[0]),
    }
    println!("  try:      puppet-job run --application 'Lamp[prod]'");
    println!(
        "            puppet-job run --nodes web1.example.com,web2.example.com --concurrency 1"
    );
    println!("            puppet-app show Lamp");
    println!("            puppet-job show");
    println!("            porch cluster status");
    println!("            porch rbac user add alice --role operator");
    println!(
        "  elsewhere: export PORCH_SERVICE_URL={urls}; pass --cacert {} --token-file {}",
        pki.cacert.display(),
        token_file.display()
    );
    println!("Ctrl+C stops the cluster (data is kept).");
    let outcome = tokio::select! {
        _ = porch_node::server::shutdown_signal() => Ok(ExitCode::SUCCESS),
        (id, how) = first_exit(&mut nodes) => Err(node_exited(id, &how)),
    };
    for child in nodes.iter_mut().chain(&mut agent_processes) {
        let _ = child.start_kill();
    }
    for child in nodes.iter_mut().chain(&mut agent_processes) {
        let _ = child.wait().await;
    }
    outcome
}

/// Waits until one of the dev cluster's nodes exits: its id (from 1) and how it ended.
async fn first_exit(nodes: &mut [tokio::process::Child]) -> (usize, String) {
    loop {
        for (i, node) in nodes.iter_mut().enumerate() {
            match node.try_wait() {
                Ok(Some(status)) => return (i + 1, status.to_string()),
                Ok(None) => {}
                Err(e) => return (i + 1, e.to_string()),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn node_exited(id: usize, how: &str) -> String {
    format!(
        "node {id} of the dev cluster exited ({how}; its messages are above): the cluster is stopped"
    )
}

/// The shipped example code next to the workspace, if it is there.
pub(crate) fn default_codedir() -> PathBuf {
    let candidates = [
        PathBuf::from("lang/examples/code"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lang/examples/code"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/etc/puppetlabs/code"))
}
