//! A node's settings, and parsing of the flags that carry them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a node needs to start. Built by `porch server` from flags, or by tests.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    pub data_dir: PathBuf,
    /// Address to bind (`host:port`).
    pub listen: String,
    /// Address peers and clients use to reach this node; defaults to `listen`.
    pub advertise: String,
    /// The founding members, `id -> host:port`. Only used on the very first start.
    pub initial_cluster: BTreeMap<u64, String>,
    pub raft: RaftTimings,
    /// Queue capacities. Production keeps the defaults; the simulation draws them per seed,
    /// sometimes tiny, so the code paths of a full queue run too.
    pub capacities: Capacities,
    /// Runs in flight over all jobs, cluster-wide (PE's `task_concurrency` default is 250).
    pub runs_in_flight_max: usize,
    /// How long an agent may stay disconnected before its run is `errored` (unreachable).
    pub agent_unreachable_timeout: Duration,
    /// How often a node heartbeats each agent session; three silent (or full-queue)
    /// intervals end a session.
    pub agent_heartbeat_interval: Duration,
    /// Where Puppet code lives (`environments/<env>/...`).
    pub codedir: PathBuf,
    /// Per-request deadline for writes and reads that must reach the leader.
    pub request_timeout: Duration,
    /// Randomness for ids that must differ between clusters (the cluster id). Production
    /// draws it from the OS; the simulation from its seed.
    pub entropy: u64,
    /// Serve plain HTTP without TLS (`--insecure-http`): no client certificates, so agents
    /// and peers are not authenticated. Tokens are still required.
    pub insecure_http: bool,
    /// This node's certificate, key, CA and CRL (`None` only with `insecure_http`).
    pub tls: Option<porch_tls::TlsPaths>,
    /// How often certificate and CRL files are looked at for changes.
    pub tls_reload_every: Duration,
    /// History retention: ended jobs are dropped this long after they ended (PE's
    /// `job-prune-threshold`) ...
    pub job_prune_threshold: Duration,
    /// ... and beyond this many ended jobs, the oldest first.
    pub jobs_kept_max: u64,
    /// Whether `/metrics` counts API requests by route and status, with their latency
    /// (`--no-request-metrics` leaves that out; raft, job and agent figures stay).
    pub request_metrics: bool,
    /// This node's datacenter label (`--datacenter`), kept in its membership record.
    pub datacenter: Option<String>,
    /// Where `--query` targets are looked up (`--puppetdb-url`); without it, the certname
    /// matcher over the agents the cluster knows.
    pub puppetdb: Option<crate::puppetdb::PuppetDbConfig>,
}

#[derive(Clone, Debug)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many applied entries.
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind a snapshot, for slow followers.
    pub logs_kept_after_snapshot: u64,
    /// Entries per replication message (openraft's `max_payload_entries`; `None`: its default).
    pub max_payload_entries: Option<u64>,
    /// Entries per log append (openraft's `max_append_entries`; `None`: its default).
    pub max_append_entries: Option<u64>,
    /// Client writes batched into one append (openraft's `api_batch_capacity`; `None`: its
    /// default).
    pub api_batch_capacity: Option<u64>,
}

/// Capacities of the node's queues.
#[derive(Clone, Debug)]
pub struct Capacities {
    /// Messages queued per agent session before a slow agent is treated as gone.
    pub session_queue: usize,
    /// Applied outcomes buffered for the node's own tasks (delivery, scheduler) before a
    /// slow one lags and re-reads the state instead.
    pub applied_broadcast: usize,
}

impl Default for Capacities {
    fn default() -> Self {
        Capacities {
            session_queue: crate::agents::registry::SESSION_QUEUE_MAX,
            applied_broadcast: porch_raft::APPLIED_BROADCAST_CAPACITY,
        }
    }
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_logs: 100_000,
            logs_kept_after_snapshot: 1000,
            max_payload_entries: None,
            max_append_entries: None,
            api_batch_capacity: None,
        }
    }
}

impl NodeConfig {
    pub fn new(
        id: u64,
        data_dir: PathBuf,
        listen: String,
        initial_cluster: BTreeMap<u64, String>,
    ) -> NodeConfig {
        NodeConfig {
            id,
            data_dir,
            advertise: listen.clone(),
            listen,
            initial_cluster,
            raft: RaftTimings::default(),
            capacities: Capacities::default(),
            runs_in_flight_max: 250,
            agent_unreachable_timeout: Duration::from_secs(30),
            agent_heartbeat_interval: crate::server::AGENT_HEARTBEAT_INTERVAL,
            codedir: PathBuf::from("/etc/puppetlabs/code"),
            request_timeout: Duration::from_secs(10),
            entropy: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0)
                ^ std::process::id() as u64,
            insecure_http: false,
            tls: None,
            tls_reload_every: Duration::from_secs(10),
            job_prune_threshold: Duration::from_secs(30 * 24 * 3600),
            jobs_kept_max: 100_000,
            request_metrics: true,
            puppetdb: None,
            datacenter: None,
        }
    }

    pub fn openraft_config(&self) -> Result<openraft::Config, String> {
        let defaults = openraft::Config::default();
        let config = openraft::Config {
            cluster_name: "porch".to_string(),
            heartbeat_interval: self.raft.heartbeat_interval_ms,
            election_timeout_min: self.raft.election_timeout_min_ms,
            election_timeout_max: self.raft.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.raft.snapshot_every_logs),
            max_in_snapshot_log_to_keep: self.raft.logs_kept_after_snapshot,
            // openraft times a snapshot RPC out at ¾ of this; porch's network adds the
            // transfer time at the slowest expected link and a 1 s floor
            // (`porch_raft::network::snapshot_rpc_timeout`). A fixed 30 s here left a follower
            // whose snapshot was sent into a partition without one for 22.5 s after it healed,
            // and a cluster whose joint membership needed that follower with no commit at all.
            install_snapshot_timeout: self.raft.heartbeat_interval_ms,
            max_payload_entries: self
                .raft
                .max_payload_entries
                .unwrap_or(defaults.max_payload_entries),
            max_append_entries: self.raft.max_append_entries.or(defaults.max_append_entries),
            api_batch_capacity: self
                .raft
                .api_batch_capacity
                .unwrap_or(defaults.api_batch_capacity),
            // A node back from a partition asks before it campaigns, so it cannot depose a
            // leader the rest of the cluster still follows (porch's network carries PreVote).
            enable_pre_vote: Some(true),
            // Replication learns of entries when `append` returns (porch's returns before the
            // fsync), not at the end of the core's loop iteration. A/B, 8 s runs: 1 client
            // 965/959 vs 937/923 ops/s; 64 and 256 clients unchanged within noise.
            broadcast_submitted_on_append: Some(true),
            // A restarted leader stands for election in a new term instead of resuming its
            // old one. openraft replicates entries once `append` returns — before porch's
            // fsync — so a leader that crashes can lose entries its followers already hold;
            // resuming the same term, it would write different entries under the same
            // (term, index) and the logs would diverge for good. The simulation found
            // exactly that (seed 1601 of 2,000: a leader of {1, 3} lost index 22 in a crash,
            // came back as leader of term 2, and node 3 kept its own index 22).
            enable_leader_restore: Some(false),
            ..Default::default()
        };
        config.validate().map_err(|e| format!("raft settings: {e}"))
    }
}

/// Parses `1=host:port,2=host:port,...`. Errors name the offending item.
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut members = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = parse_member(item)?;
        if members.insert(id, addr).is_some() {
            return Err(format!("'{item}': node id {id} appears twice"));
        }
    }
    if members.is_empty() {
        return Err("no members given (expected 1=host:port,2=host:port,...)".into());
    }
    Ok(members)
}

/// Parses one `id=host:port`.
pub fn parse_member(item: &str) -> Result<(u64, String), String> {
    let (id, addr) = item
        .split_once('=')
        .ok_or_else(|| format!("'{item}' is not of the form <id>=[certname@]<host:port>"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("'{item}': node id '{id}' is not a positive integer"))?;
    if id == 0 {
        return Err(format!("'{item}': node ids start at 1"));
    }
    validate_addr(addr.trim()).map_err(|e| format!("'{item}': {e}"))?;
    Ok((id, addr.trim().to_string()))
}

/// Checks a member address `[certname@]host:port` (port 1-65535, host non-empty).
pub fn validate_addr(addr: &str) -> Result<(), String> {
    // `;` separates the fields of a member record (`porch_raft::PeerNode`).
    if addr.contains(';') || addr.chars().any(char::is_whitespace) {
        return Err(format!("'{addr}': no ';' or spaces in an address"));
    }
    if let Some((certname, _)) = addr.split_once('@')
        && !porch_core::plan::is_valid_certname(certname)
    {
        return Err(format!("'{addr}': {certname:?} is not a valid certname"));
    }
    let socket = porch_raft::member_socket_addr(addr);
    let (host, port) = socket
        .rsplit_once(':')
        .ok_or_else(|| format!("'{addr}' has no port"))?;
    if host.is_empty() {
        return Err(format!("'{addr}' has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("'{addr}': '{port}' is not a port number")),
    }
}

/// Longest datacenter label: a name, not a description.
pub const DATACENTER_LABEL_BYTES_MAX: usize = 64;

/// Checks a datacenter label (`--datacenter`): 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn validate_datacenter(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > DATACENTER_LABEL_BYTES_MAX {
        return Err(format!(
            "datacenter {label:?}: expected 1 to {DATACENTER_LABEL_BYTES_MAX} characters"
        ));
    }
    match label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(bad) => Err(format!(
            "datacenter {label:?}: {bad:?} is not allowed (letters, digits, '-', '_', '.')"
        )),
        None => Ok(()),
    }
}

/// Checks `--puppetdb-url`: `https://host:port` (or `http://` for PuppetDB's local
/// cleartext port), optionally with a path prefix; returned without a trailing slash.
pub fn parse_puppetdb_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("'{text}': {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("'{text}': expected https://host:port"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{text}' has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "'{text}': give only scheme, host, port and an optional path prefix"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// porch's log acknowledges appends before they are flushed, and openraft replicates
    /// entries as soon as `append` returns: a leader may lose entries its followers hold.
    /// It must then never resume its old term after a restart (see `openraft_config`).
    #[test]
    fn a_restarted_leader_stands_for_election_instead_of_resuming_its_term() {
        let config = NodeConfig::new(
            1,
            PathBuf::from("/tmp/x"),
            "127.0.0.1:1".into(),
            BTreeMap::new(),
        )
        .openraft_config()
        .unwrap();
        assert_eq!(config.enable_leader_restore, Some(false));
    }

    /// A snapshot sent into a partition must time out as fast as an AppendEntries would
    /// (plus its transfer), not at openraft's default or a fixed half minute: seed 55 of the
    /// simulation waited 22.5 s for one with its cluster unable to commit meanwhile.
    #[test]
    fn a_snapshot_rpc_times_out_on_the_heartbeats_scale() {
        let mut node = NodeConfig::new(
            1,
            PathBuf::from("/tmp/x"),
            "127.0.0.1:1".into(),
            BTreeMap::new(),
        );
        node.raft.heartbeat_interval_ms = 300;
        let config = node.openraft_config().unwrap();
        assert_eq!(
            config.install_snapshot_timeout(),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn datacenter_labels_are_short_names_and_errors_say_what_is_wrong() {
        for good in ["eu-west-1", "dc2", "paris.a", "us_east"] {
            assert_eq!(validate_datacenter(good), Ok(()), "{good}");
        }
        assert!(validate_datacenter("").unwrap_err().contains("1 to 64"));
        assert!(
            validate_datacenter(&"x".repeat(65))
                .unwrap_err()
                .contains("1 to 64")
        );
        assert!(
            validate_datacenter("eu west")
                .unwrap_err()
                .contains("' ' is not allowed")
        );
    }

    #[test]
    fn initial_cluster_errors_name_the_item() {
        assert_eq!(
            parse_initial_cluster("1=a:1,2=host").unwrap_err(),
            "'2=host': 'host' has no port"
        );
        assert!(
            parse_initial_cluster("x=a:1")
                .unwrap_err()
                .contains("not a positive integer")
        );
        assert!(
            parse_initial_cluster("1=a:1,1=b:2")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            parse_initial_cluster("1=a:99999")
                .unwrap_err()
                .contains("not a port")
        );
        let members = parse_initial_cluster("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn puppetdb_url_errors_name_the_url() {
        assert_eq!(
            parse_puppetdb_url("https://puppetdb.example:8081/").unwrap(),
            "https://puppetdb.example:8081"
        );
        assert_eq!(
            parse_puppetdb_url("https://proxy.example/puppetdb").unwrap(),
            "https://proxy.example/puppetdb"
        );
        assert!(
            parse_puppetdb_url("puppetdb:8081")
                .unwrap_err()
                .contains("expected https://host:port")
        );
        assert!(
            parse_puppetdb_url("https://:8081")
                .unwrap_err()
                .contains("'https://:8081'")
        );
        assert!(
            parse_puppetdb_url("https://pdb:8081/?x=1")
                .unwrap_err()
                .contains("only scheme, host, port")
        );
    }
}
