//! The agent's spool: one file per transaction it ever accepted, written durably (temp file,
//! fsync, rename, fsync of the directory) before the agent acts on it. This is what makes a
//! run happen at most once: a request for a transaction already in the spool is never run
//! again — the agent answers with what it knows instead. And it is what makes a result
//! survive an agent crash until the cluster has acknowledged it. Records live in a
//! [`SpoolStore`] (files in production), each with its checksum: a damaged one is reported
//! errored, as an interrupted run is.

use crate::spool_store::{FileSpoolStore, SpoolStore, seal, unseal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest transaction id accepted (it becomes a file name).
pub const TRANSACTION_ID_BYTES_MAX: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Finished,
    Failed,
    Errored,
}

/// A run's result as the spool keeps it (mirrors the protocol's `RunResult`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    pub outcome: Outcome,
    pub status: String,
    pub metrics: BTreeMap<String, i64>,
    pub configuration_version: String,
    pub puppet_transaction_uuid: String,
    pub environment: String,
    pub exit_code: i32,
    pub message: String,
    /// What only the puppet runner knows (empty for the others).
    #[serde(default)]
    pub puppet: PuppetRunDetails,
    /// A task's standard error (its output, `message`, is its stdout).
    #[serde(default)]
    pub stderr: String,
}

/// The puppet runner's facts about a run beyond the common ones (see `RunResult` in
/// `proto/agent.proto`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PuppetRunDetails {
    pub noop: bool,
    pub noop_pending: bool,
    pub report_sha256: String,
    pub time_total_ms: Option<i64>,
    pub events: BTreeMap<String, i64>,
}

impl StoredResult {
    pub fn errored(message: impl Into<String>) -> StoredResult {
        StoredResult {
            outcome: Outcome::Errored,
            status: "errored".into(),
            metrics: BTreeMap::new(),
            configuration_version: String::new(),
            puppet_transaction_uuid: String::new(),
            environment: String::new(),
            exit_code: -1,
            message: message.into(),
            puppet: PuppetRunDetails::default(),
            stderr: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub transaction_id: String,
    pub job_id: u64,
    pub accepted_ms: u64,
    /// `None` while the run has not finished.
    pub result: Option<StoredResult>,
    /// The cluster confirmed it committed the result: stop re-sending it.
    pub acked: bool,
}

/// Milliseconds since the Unix epoch (the simulation passes its own clock).
pub type SpoolClock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// How long an acknowledged transaction is remembered (pxp-agent's spool purge default):
/// far longer than any run can stay in flight, so a re-sent request never meets a forgotten id.
pub const SPOOL_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

pub struct Spool {
    store: Arc<dyn SpoolStore>,
    entries: BTreeMap<String, Entry>,
    now_ms: SpoolClock,
}

fn planted_run_before_spool_sync() -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        porch_core::planted::active(porch_core::planted::Bug::RunBeforeSpoolSync)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        false
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// Whether `id` is safe as a file name: letters, digits, `-`, `_`, `.`; not starting with `.`.
pub fn valid_transaction_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= TRANSACTION_ID_BYTES_MAX
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl Spool {
    /// Opens the spool in `dir` (created if missing). Runs that were accepted but have no
    /// result were interrupted by a crash: they are recorded as errored, never re-run.
    pub fn open(dir: &Path) -> Result<Spool, String> {
        Spool::open_with_clock(dir, std::sync::Arc::new(wall_clock_ms))
    }

    /// As [`Spool::open`], with the clock that stamps accepted runs and ages them out.
    pub fn open_with_clock(dir: &Path, now_ms: SpoolClock) -> Result<Spool, String> {
        Spool::open_in(Arc::new(FileSpoolStore::open(dir)?), now_ms)
    }

    /// As [`Spool::open_with_clock`], over any store (the simulation's disk).
    pub fn open_in(store: Arc<dyn SpoolStore>, now_ms: SpoolClock) -> Result<Spool, String> {
        let records = store
            .list()
            .map_err(|e| format!("spool: cannot read its records: {e}"))?;
        let mut spool = Spool {
            store,
            entries: BTreeMap::new(),
            now_ms,
        };
        let mut interrupted = Vec::new();
        let mut damaged = Vec::new();
        for (name, bytes) in records {
            let parsed = unseal(&bytes)
                .and_then(|json| serde_json::from_slice::<Entry>(json).map_err(|e| e.to_string()));
            match parsed {
                Ok(entry) if entry.transaction_id == name => {
                    if entry.result.is_none() {
                        interrupted.push(name.clone());
                    }
                    spool.entries.insert(name, entry);
                }
                Ok(entry) => damaged.push((
                    name,
                    format!("it names transaction {}", entry.transaction_id),
                )),
                Err(e) => damaged.push((name, e)),
            }
        }
        for txn in interrupted {
            spool.finish(
                &txn,
                StoredResult::errored(
                    "the agent restarted during the run; it may or may not have completed",
                ),
            )?;
        }
        // The transaction was accepted (its record exists), so it may have run: it must never
        // run again, and what its record said is unknown.
        for (txn, why) in damaged {
            tracing::warn!(
                "spool record of transaction {txn} is corrupt ({why}): reported errored"
            );
            if !valid_transaction_id(&txn) {
                continue;
            }
            let entry = Entry {
                transaction_id: txn.clone(),
                job_id: 0,
                accepted_ms: (spool.now_ms)(),
                result: Some(StoredResult::errored(format!(
                    "the agent's spool record of this run was corrupt ({why}); it may or may not have completed"
                ))),
                acked: false,
            };
            spool.persist(&entry)?;
            spool.entries.insert(txn, entry);
        }
        Ok(spool)
    }

    pub fn get(&self, transaction_id: &str) -> Option<&Entry> {
        self.entries.get(transaction_id)
    }

    /// Records `transaction_id` as accepted, durably. Returns false if it was already known
    /// (then it must not run).
    pub fn accept(&mut self, transaction_id: &str, job_id: u64) -> Result<bool, String> {
        if self.entries.contains_key(transaction_id) {
            return Ok(false);
        }
        let entry = Entry {
            transaction_id: transaction_id.to_string(),
            job_id,
            accepted_ms: (self.now_ms)(),
            result: None,
            acked: false,
        };
        self.persist(&entry)?;
        self.entries.insert(transaction_id.to_string(), entry);
        Ok(true)
    }

    pub fn finish(&mut self, transaction_id: &str, result: StoredResult) -> Result<(), String> {
        let Some(mut entry) = self.entries.get(transaction_id).cloned() else {
            return Err(format!("transaction {transaction_id} is not in the spool"));
        };
        entry.result = Some(result);
        self.persist(&entry)?;
        self.entries.insert(transaction_id.to_string(), entry);
        Ok(())
    }

    pub fn ack(&mut self, transaction_id: &str) -> Result<(), String> {
        let Some(mut entry) = self.entries.get(transaction_id).cloned() else {
            return Ok(());
        };
        if entry.acked || entry.result.is_none() {
            return Ok(());
        }
        entry.acked = true;
        self.persist(&entry)?;
        self.entries.insert(transaction_id.to_string(), entry);
        Ok(())
    }

    /// Finished results the cluster has not acknowledged yet.
    pub fn unacked(&self) -> Vec<Entry> {
        self.entries
            .values()
            .filter(|e| e.result.is_some() && !e.acked)
            .cloned()
            .collect()
    }

    /// Forgets acknowledged entries older than `ttl`.
    pub fn purge(&mut self, ttl: Duration) {
        let cutoff = (self.now_ms)().saturating_sub(ttl.as_millis() as u64);
        let old: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.acked && e.accepted_ms < cutoff)
            .map(|e| e.transaction_id.clone())
            .collect();
        for txn in &old {
            let _ = self.store.remove(txn);
            self.entries.remove(txn);
        }
        if !old.is_empty() {
            let _ = self.store.sync();
        }
    }

    fn persist(&self, entry: &Entry) -> Result<(), String> {
        if !valid_transaction_id(&entry.transaction_id) {
            return Err(format!(
                "refusing transaction id {:?}: not a safe file name",
                entry.transaction_id
            ));
        }
        let json = serde_json::to_vec_pretty(entry).map_err(|e| e.to_string())?;
        let txn = &entry.transaction_id;
        self.store
            .write(txn, &seal(&json))
            .map_err(|e| format!("spool record of {txn}: cannot write: {e}"))?;
        // Planted: a new transaction is run before its record is durable, so a crash of the
        // machine during the run can forget it was ever accepted.
        if entry.result.is_none() && planted_run_before_spool_sync() {
            return Ok(());
        }
        self.store
            .sync()
            .map_err(|e| format!("spool record of {txn}: cannot sync: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_transaction_is_never_accepted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        assert!(spool.accept("c-1-0-1", 1).unwrap());
        assert!(!spool.accept("c-1-0-1", 1).unwrap());
        drop(spool);
        let mut reopened = Spool::open(dir.path()).unwrap();
        assert!(
            !reopened.accept("c-1-0-1", 1).unwrap(),
            "the spool survives a restart"
        );
    }

    #[test]
    fn run_interrupted_by_a_crash_is_errored_not_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.accept("t1", 1).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        let entry = spool.get("t1").unwrap();
        assert_eq!(entry.result.as_ref().unwrap().outcome, Outcome::Errored);
        assert_eq!(
            spool.unacked().len(),
            1,
            "the errored result is still to be sent"
        );
    }

    #[test]
    fn results_are_resent_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.accept("t1", 1).unwrap();
        spool.finish("t1", StoredResult::errored("x")).unwrap();
        assert_eq!(spool.unacked().len(), 1);
        spool.ack("t1").unwrap();
        assert!(spool.unacked().is_empty());
        let reopened = Spool::open(dir.path()).unwrap();
        assert!(reopened.unacked().is_empty(), "the ack is durable");
    }

    #[test]
    fn acknowledged_entries_age_out_and_unacknowledged_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1_000));
        let clock = now.clone();
        let mut spool = Spool::open_with_clock(
            dir.path(),
            std::sync::Arc::new(move || clock.load(std::sync::atomic::Ordering::SeqCst)),
        )
        .unwrap();
        for txn in ["acked", "unacked"] {
            spool.accept(txn, 1).unwrap();
            spool.finish(txn, StoredResult::errored("x")).unwrap();
        }
        spool.ack("acked").unwrap();
        spool.purge(Duration::from_millis(500));
        assert!(spool.get("acked").is_some(), "not old enough yet");
        now.store(2_000, std::sync::atomic::Ordering::SeqCst);
        spool.purge(Duration::from_millis(500));
        assert!(
            spool.get("acked").is_none(),
            "an old acknowledged entry is forgotten"
        );
        assert!(
            spool.get("unacked").is_some(),
            "a result not yet acknowledged is kept"
        );
        let reopened = Spool::open(dir.path()).unwrap();
        assert!(reopened.get("acked").is_none(), "its file is gone too");
    }

    #[test]
    fn a_corrupt_record_is_reported_errored_and_never_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.accept("t1", 1).unwrap();
        let mut finished = StoredResult::errored("x");
        finished.outcome = Outcome::Finished;
        spool.finish("t1", finished).unwrap();
        drop(spool);
        let path = dir.path().join("t1.json");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x04; // a bit of the JSON: still JSON, another record
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(dir.path().join("t2.json"), b"{not json").unwrap();

        let mut spool = Spool::open(dir.path()).unwrap();
        for txn in ["t1", "t2"] {
            let result = spool.get(txn).unwrap().result.clone().unwrap();
            assert_eq!(result.outcome, Outcome::Errored, "{txn}");
            assert!(
                result.message.contains("corrupt"),
                "{txn}: {}",
                result.message
            );
            assert!(!spool.accept(txn, 1).unwrap(), "{txn} must never run again");
        }
        assert_eq!(spool.unacked().len(), 2, "both are reported");
    }

    #[test]
    fn unsafe_transaction_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        assert!(spool.accept("../etc/passwd", 1).is_err());
        assert!(spool.accept(".hidden", 1).is_err());
    }
}
