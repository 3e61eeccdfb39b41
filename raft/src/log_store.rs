//! openraft's log storage over a [`Disk`].
//!
//! Durability contract (openraft `RaftLogStorage`), and how it is kept:
//! - `append`: entries are readable when `append` returns (one atomic batch), and the
//!   `IOFlushed` callback fires only after a flush that covers them has completed
//!   ([`Disk::flush_then`]; `append` does not wait for it).
//! - `save_vote`: the vote is flushed before returning — a node must never vote twice in a term
//!   because a vote was lost in a crash.
//! - `truncate_after`: one atomic batch, then flushed.
//! - `purge`: records the last purged id durably, then deletes the entries below it in the
//!   background, in chunks. Entries below the purge point are never read again (reads and
//!   the log state start above it), so a crash mid-deletion leaves stale entries below the
//!   purge point (ignored, and deleted by the next purge) rather than a hole.
//! - no holes: entries are only ever added at the tail and removed from either end.

use crate::disk::{Disk, Tree, Write, corrupt, log_index, log_key};
use crate::envelope::{self, Kind};
use crate::storage_metrics::LogMetrics;
use crate::types::{Entry, LogId, TypeConfig, Vote};
use crate::written_format::WrittenFormat;
use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

pub(crate) const VOTE_KEY: &[u8] = b"vote";
pub(crate) const COMMITTED_KEY: &[u8] = b"committed";
pub(crate) const LAST_PURGED_KEY: &[u8] = b"last_purged";
/// See [`crate::repair::VoteFloor`].
pub(crate) const VOTE_FLOOR_KEY: &[u8] = b"vote_floor";
/// Log entries deleted per step when a purge clears them from disk.
const PURGE_CHUNK: usize = 1000;

/// The raft log, vote and committed id of one node. Cheap to clone (clones share the disk).
#[derive(Clone)]
pub struct LogStore {
    disk: Arc<dyn Disk>,
    metrics: Arc<LogMetrics>,
    /// Entries are sealed in the format their cluster writes, so a node rolled back to the
    /// previous release before the cluster raised its version still reads its own log.
    written_format: WrittenFormat,
}

impl LogStore {
    pub fn new(disk: Arc<dyn Disk>, written_format: WrittenFormat) -> LogStore {
        LogStore {
            disk,
            metrics: Arc::default(),
            written_format,
        }
    }

    /// What this store measures (shared with every clone, read by the metrics endpoint).
    pub fn metrics(&self) -> Arc<LogMetrics> {
        self.metrics.clone()
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        read_meta(self.disk.as_ref(), key)
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        write_meta(self.disk.as_ref(), key, value)
    }

    /// Starts an empty log right after a snapshot at `log_id` (a restored node): purged up
    /// to it and committed to it, so openraft sees the log end where the snapshot does.
    pub async fn seed_after_snapshot(&self, log_id: LogId) -> io::Result<()> {
        self.write_meta(LAST_PURGED_KEY, &log_id)?;
        self.write_meta(COMMITTED_KEY, &Some(log_id))?;
        self.disk.flush().await
    }

    fn last_purged(&self) -> io::Result<Option<LogId>> {
        self.read_meta(LAST_PURGED_KEY)
    }
}

/// A raft metadata record (vote, committed, purge point, vote floor), enveloped with its
/// checksum: a flipped bit in a vote's term must be caught, not believed.
pub(crate) fn write_meta<T: Serialize>(disk: &dyn Disk, key: &[u8], value: &T) -> io::Result<()> {
    let bytes =
        // Its layout is the same in every format this build reads: the oldest, so a build
        // rolled back to reads it too.
        envelope::encode_at(Kind::RaftMeta, envelope::FORMAT_VERSION_MIN, value)
            .map_err(|e| io::Error::other(e.to_string()))?;
    disk.write(Tree::Meta, vec![Write::Put(key.to_vec(), bytes)])
}

/// Reads what [`write_meta`] wrote. Data dirs written before metadata carried checksums hold
/// it as JSON (which never starts with the envelope's tag): read as such until rewritten.
pub(crate) fn read_meta<T: DeserializeOwned>(disk: &dyn Disk, key: &[u8]) -> io::Result<Option<T>> {
    let Some(bytes) = disk.get(Tree::Meta, key)? else {
        return Ok(None);
    };
    let what = String::from_utf8_lossy(key);
    if bytes.first() == Some(&Kind::RaftMeta.tag()) {
        envelope::decode(Kind::RaftMeta, &bytes)
            .map(|(value, _version)| Some(value))
            .map_err(|e| corrupt(format!("meta record '{what}': {e}")))
    } else {
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(format!("corrupt meta record '{what}': {e}")))
    }
}

/// An entry as the log keeps it: refused (a storage error, which stops raft and the node)
/// when its checksum fails or a newer porch wrote it, so it is never applied.
fn decode_entry(bytes: &[u8]) -> io::Result<Entry> {
    envelope::decode(Kind::LogEntry, bytes)
        .map(|(entry, _)| entry)
        .map_err(|e| corrupt(e.to_string()))
}

fn encode_entry(entry: &Entry, written_format: &WrittenFormat) -> io::Result<Vec<u8>> {
    let version = written_format.for_entries([entry]);
    envelope::encode_at(Kind::LogEntry, version, entry).map_err(|e| io::Error::other(e.to_string()))
}

fn start_index<RB: RangeBounds<u64>>(range: &RB) -> u64 {
    match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

/// `None` means "to the end".
fn end_index<RB: RangeBounds<u64>>(range: &RB) -> Option<u64> {
    match range.end_bound() {
        Bound::Included(&i) => i.checked_add(1),
        Bound::Excluded(&i) => Some(i),
        Bound::Unbounded => None,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        // Entries at or below the purge point may still be on disk (see `purge`): never
        // served.
        let first_kept = self.last_purged()?.map_or(0, |id| id.index() + 1);
        let start = start_index(&range).max(first_kept);
        let end = end_index(&range);
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let from = log_key(start);
        let to = end.map(log_key);
        let rows = self
            .disk
            .range(Tree::Log, &from, to.as_ref().map(|k| &k[..]))?;
        let mut entries = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            let index = log_index(&key)?;
            let entry: Entry = decode_entry(&value)?;
            if entry.index() != index {
                return Err(corrupt(format!(
                    "log entry at key {index} has index {}",
                    entry.index()
                )));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(VOTE_KEY)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = self.last_purged()?;
        let last_entry = match self.disk.last(Tree::Log)? {
            None => None,
            Some((_, value)) => Some(decode_entry(&value)?.log_id),
        };
        // Entries at or below the purge point may survive a crash mid-purge; they don't count.
        let last_log_id = match (last_entry, last_purged_log_id) {
            (Some(entry), Some(purged)) if entry.index() <= purged.index() => Some(purged),
            (Some(entry), _) => Some(entry),
            (None, purged) => purged,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.write_meta(VOTE_KEY, vote)?;
        self.disk.flush().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed here: losing it only means re-applying from the snapshot after a crash,
        // and the next flush (every append) makes it durable anyway.
        self.write_meta(COMMITTED_KEY, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut writes = Vec::new();
        for entry in entries {
            let bytes = encode_entry(&entry, &self.written_format)?;
            writes.push((log_key(entry.index()).to_vec(), bytes));
        }
        self.disk.append(Tree::Log, writes)?;
        // Readable now, durable when the callback fires: openraft replicates the entries
        // meanwhile, so the leader's fsync overlaps the followers' instead of preceding it.
        let metrics = self.metrics.clone();
        if porch_core::planted::active(porch_core::planted::Bug::AckBeforeFlush) {
            callback.io_completed(Ok(()));
            self.disk.flush_then(Box::new(|_| ()));
            return Ok(());
        }
        self.disk.flush_then(Box::new(move |flushed| {
            metrics.append_to_durable.observe(started.elapsed());
            callback.io_completed(flushed)
        }));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        let keys = self.disk.range(Tree::Log, &log_key(from), None)?;
        let writes = keys.into_iter().map(|(k, _)| Write::Delete(k)).collect();
        self.disk.write(Tree::Log, writes)?;
        self.disk.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        if let Some(purged) = self.last_purged()?
            && purged.index() >= log_id.index()
        {
            return Ok(());
        }
        self.write_meta(LAST_PURGED_KEY, &log_id)?;
        self.disk.flush().await?;
        // From here the entries are gone as far as anyone can tell: reads and the log state
        // start above the purge point. Deleting them from disk is only about space, and done
        // in the background in small chunks: deleting a snapshot's worth (100,000 entries at
        // defaults) in one go blocked this store — every append — for ~1 s.
        let disk = self.disk.clone();
        let below = log_key(log_id.index() + 1);
        // On the low-priority thread (see `crate::background`): sled's deletes are CPU work
        // on every node at once, right after each snapshot.
        crate::background::spawn(move || {
            // Stops when done; or on failure, and the next purge deletes what is left.
            while let Ok(PURGE_CHUNK) = disk.delete_first(Tree::Log, &below, PURGE_CHUNK) {}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimDisk;
    use openraft::testing::{blank_ent, log_id};
    use openraft::type_config::TypeConfigExt;

    /// An entry on disk written by a newer porch, or damaged, is never served: reading it is
    /// a storage error naming the problem (raft stops before applying it).
    #[tokio::test]
    async fn an_entry_in_a_newer_format_or_corrupt_is_never_served() {
        let disk = Arc::new(SimDisk::new());
        let mut store = LogStore::new(disk.clone(), WrittenFormat::new(envelope::FORMAT_VERSION));
        let (tx, rx) = TypeConfig::oneshot();
        let entries: Vec<Entry> = (1..=3).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
        store.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
        let mut newer = disk.get(Tree::Log, &log_key(2)).unwrap().unwrap();
        envelope::restamp_version(&mut newer, envelope::FORMAT_VERSION + 1);
        disk.write(Tree::Log, vec![Write::Put(log_key(2).to_vec(), newer)])
            .unwrap();
        let error = store.try_get_log_entries(1..=3).await.unwrap_err();
        assert!(
            error.to_string().contains("newer than this porch"),
            "{error}"
        );

        let mut flipped = disk.get(Tree::Log, &log_key(3)).unwrap().unwrap();
        *flipped.last_mut().unwrap() ^= 1;
        disk.write(Tree::Log, vec![Write::Put(log_key(3).to_vec(), flipped)])
            .unwrap();
        let error = store.get_log_state().await.unwrap_err();
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    /// Entries are sealed in the version the cluster writes (the previous release's, mid
    /// upgrade), except the entry raising it, which only readers of the new version know.
    #[tokio::test]
    async fn entries_are_sealed_in_the_clusters_format_and_a_raise_in_the_raised_one() {
        let disk = Arc::new(SimDisk::new());
        let previous = envelope::FORMAT_VERSION_MIN;
        let mut store = LogStore::new(disk.clone(), WrittenFormat::new(previous));
        let raise = porch_core::Request {
            request_id: None,
            now_ms: 1,
            command: porch_core::Command::SetFormatVersion {
                version: previous + 1,
            },
            origin: None,
        };
        let entries = vec![
            blank_ent::<TypeConfig>(1, 1, 1),
            Entry::new_normal(log_id::<TypeConfig>(1, 1, 2), raise),
        ];
        let (tx, rx) = TypeConfig::oneshot();
        store.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
        for (index, version) in [(1, previous), (2, previous + 1)] {
            let bytes = disk.get(Tree::Log, &log_key(index)).unwrap().unwrap();
            assert_eq!(envelope::open(Kind::LogEntry, &bytes).unwrap().0, version);
        }
        assert_eq!(store.try_get_log_entries(1..=2).await.unwrap().len(), 2);
    }

    /// A purge answers at once and leaves the entries for a background task to delete: they
    /// must never be served meanwhile, and must be gone from disk soon after.
    #[tokio::test]
    async fn purged_entries_are_never_served_and_leave_the_disk_in_the_background() {
        let disk = Arc::new(SimDisk::new());
        let mut store = LogStore::new(disk.clone(), WrittenFormat::new(envelope::FORMAT_VERSION));
        let entries: Vec<Entry> = (1..=2500)
            .map(|i| blank_ent::<TypeConfig>(1, 1, i))
            .collect();
        let (tx, rx) = TypeConfig::oneshot();
        store.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();

        store.purge(log_id::<TypeConfig>(1, 1, 2000)).await.unwrap();
        let served = store.try_get_log_entries(0..).await.unwrap();
        assert_eq!(served.first().map(|e| e.index()), Some(2001));
        assert_eq!(served.len(), 500);
        assert!(
            store.try_get_log_entries(5..10).await.unwrap().is_empty(),
            "a range wholly below the purge point is empty, not an error"
        );
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|id| id.index()), Some(2000));
        assert_eq!(state.last_log_id.map(|id| id.index()), Some(2500));

        for _ in 0..100 {
            if disk
                .range(Tree::Log, &log_key(0), Some(&log_key(2001)))
                .unwrap()
                .is_empty()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            disk.range(Tree::Log, &log_key(0), Some(&log_key(2001)))
                .unwrap()
                .is_empty(),
            "the purged entries are still on disk"
        );
        assert_eq!(disk.range(Tree::Log, &log_key(0), None).unwrap().len(), 500);
    }
}
