//! What a node does at start when its disk holds bytes whose checksum fails (a flipped bit, a
//! bad sector): every record is read back and checked before openraft sees any of it, and
//! the node either repairs its store from what is still sound — and recovers the rest from
//! its peers — or refuses to start with a message naming the record and what to do.
//!
//! - A log entry the snapshot covers: the log is purged up to the snapshot (nothing is lost:
//!   the snapshot holds its effect).
//! - A log entry past the snapshot: the log is cut before it, and the leader replicates the
//!   entries again. This node may have acknowledged the lost entries, so until its log is
//!   back to where it was it grants no vote to a candidate that might lack them (the
//!   [`VoteFloor`]): otherwise a committed entry held by a bare majority could be lost with
//!   it (openraft's FAQ, "wipe node data").
//! - The snapshot: set aside; if the log still holds every entry the state is rebuilt from
//!   it, otherwise the log is dropped too and the leader sends its snapshot (with the vote
//!   floor, as above).
//! - The committed index (a hint): dropped. The purge point: the snapshot's, when it has one.
//! - The vote, or the vote floor itself: refused. A node that cannot know whom it voted for
//!   must not vote again in that term; its operator replaces it.
//!
//! The simulation flips bits on the disks of stopped nodes (`Fault::BitRot`) and checks
//! that nothing corrupt is applied and no acknowledged job is lost.

use crate::disk::{Disk, Tree, Write, log_index, log_key};
use crate::envelope::{self, Kind};
use crate::log_store::{self, COMMITTED_KEY, LAST_PURGED_KEY, VOTE_FLOOR_KEY, VOTE_KEY};
use crate::state_machine_store::{self, SNAPSHOT_BLOB};
use crate::types::{Entry, LogId, Vote};
use openraft::entry::RaftEntry;
use serde::{Deserialize, Serialize};

/// Until this node's log reaches `index` again, it grants no vote (nor pre-vote) to a
/// candidate whose last entry's term is at most `term` and whose log ends before `index`:
/// such a candidate might lack an entry this node acknowledged and then lost to
/// corruption. `term` is this node's vote's term when it lost them, the highest term any of
/// its entries can have had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteFloor {
    pub index: u64,
    pub term: u64,
}

impl VoteFloor {
    /// Whether a candidate whose log ends at `candidate_last` may have this node's vote while
    /// this node's own log ends at `own_last_index`.
    pub fn allows(&self, own_last_index: Option<u64>, candidate_last: Option<&LogId>) -> bool {
        if own_last_index.is_some_and(|own| own >= self.index) {
            return true;
        }
        candidate_last
            .is_some_and(|last| last.leader_id.term > self.term || last.index >= self.index)
    }
}

/// What the start-up check found and did, one line per repair, for the node's log.
pub type Repairs = Vec<String>;

/// Checks every record on `disk` and repairs what can be repaired (see the module's
/// comment). `data_dir` names the store in messages. Returns the repairs made and the vote
/// floor in force, or why the node must not start.
pub async fn check_and_repair(
    disk: &dyn Disk,
    data_dir: &str,
) -> Result<(Repairs, Option<VoteFloor>), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{data_dir}: {what}: {e}");
    let vote: Option<Vote> = log_store::read_meta(disk, VOTE_KEY).map_err(|e| {
        format!(
            "{data_dir}: the raft vote record (meta tree, key 'vote') is unreadable: {e}. This \
             node cannot know whom it voted for, so it must not rejoin with this data: remove \
             it from the cluster (porch cluster remove), move the data dir away and add a new \
             member in its place"
        )
    })?;
    let mut floor: Option<VoteFloor> = log_store::read_meta(disk, VOTE_FLOOR_KEY).map_err(|e| {
        format!(
            "{data_dir}: the vote floor record (meta tree, key 'vote_floor') is unreadable: \
                 {e}. Without it this node cannot know which candidates may lack entries it \
                 lost: remove it from the cluster, move the data dir away and add a new member \
                 in its place"
        )
    })?;
    let mut repairs = Repairs::new();
    let snapshot = match state_machine_store::load_snapshot(disk).and_then(|loaded| {
        loaded
            .map(|(meta, data)| {
                state_machine_store::decode_state_of(&data, "snapshot file").map(|_| meta)
            })
            .transpose()
    }) {
        Ok(meta) => meta,
        Err(e) => {
            disk.set_aside_blob(SNAPSHOT_BLOB)
                .map_err(|e| fail("cannot set the corrupt snapshot aside", &e))?;
            repairs.push(format!("snapshot file set aside ({e})"));
            None
        }
    };
    let snapshot_bad = !repairs.is_empty();
    let snapshot_last: Option<LogId> = snapshot.and_then(|meta| meta.last_log_id);
    let mut last_purged: Option<LogId> = match log_store::read_meta(disk, LAST_PURGED_KEY) {
        Ok(purged) => purged,
        Err(e) => {
            repairs.push(format!(
                "purge point unreadable ({e}): the log starts after the snapshot instead"
            ));
            let Some(snapshot_last) = snapshot_last else {
                // Nothing says which entries are gone: only the leader's snapshot can help.
                disk.write(Tree::Meta, vec![Write::Delete(LAST_PURGED_KEY.to_vec())])
                    .map_err(|e| fail("cannot write", &e))?;
                return wipe(disk, data_dir, vote, floor, repairs).await;
            };
            // Only a snapshot makes a purge, so the lost point was at most the snapshot's:
            // every entry after the snapshot is still on disk. Without a purge point at all,
            // the log would claim to start at entry 0, which is long gone.
            log_store::write_meta(disk, LAST_PURGED_KEY, &snapshot_last)
                .map_err(|e| fail("cannot write", &e))?;
            Some(snapshot_last)
        }
    };
    if log_store::read_meta::<Option<LogId>>(disk, COMMITTED_KEY).is_err() {
        disk.write(Tree::Meta, vec![Write::Delete(COMMITTED_KEY.to_vec())])
            .map_err(|e| fail("cannot write", &e))?;
        repairs.push("committed index unreadable: dropped (the leader tells it again)".into());
    }
    if snapshot_bad && last_purged.is_some() {
        // The entries the snapshot stood for are purged: this node's state is gone.
        return wipe(disk, data_dir, vote, floor, repairs).await;
    }
    if let Some(snapshot_last) = snapshot_last
        && last_purged.is_none_or(|purged| purged.index < snapshot_last.index)
        && first_corrupt(disk, &last_purged, data_dir)?
            .is_some_and(|index| index <= snapshot_last.index)
    {
        log_store::write_meta(disk, LAST_PURGED_KEY, &snapshot_last)
            .map_err(|e| fail("cannot write", &e))?;
        last_purged = Some(snapshot_last);
        repairs.push(format!(
            "corrupt log entries up to the snapshot's index {}: purged (the snapshot holds them)",
            snapshot_last.index
        ));
    }
    if let Some(corrupt_index) = first_corrupt(disk, &last_purged, data_dir)? {
        let last_on_disk = match disk.last(Tree::Log).map_err(|e| fail("cannot read", &e))? {
            Some((key, _)) => log_index(&key).map_err(|e| fail("bad log key", &e))?,
            None => corrupt_index,
        };
        floor = Some(raise_floor(floor, last_on_disk, vote.as_ref()));
        let doomed = disk
            .range(Tree::Log, &log_key(corrupt_index), None)
            .map_err(|e| fail("cannot read", &e))?;
        disk.write(
            Tree::Log,
            doomed.into_iter().map(|(k, _)| Write::Delete(k)).collect(),
        )
        .map_err(|e| fail("cannot write", &e))?;
        repairs.push(format!(
            "log entry {corrupt_index} corrupt: the log is cut before it (it held up to {last_on_disk}); the leader replicates the rest again"
        ));
        cap_committed(disk, data_dir, &last_purged).await?;
    }
    if let Some(floor) = floor {
        log_store::write_meta(disk, VOTE_FLOOR_KEY, &floor)
            .map_err(|e| fail("cannot write", &e))?;
    }
    if !repairs.is_empty() {
        disk.flush().await.map_err(|e| fail("cannot flush", &e))?;
    }
    Ok((repairs, floor))
}

/// The index of the first entry above the purge point that fails its checks.
fn first_corrupt(
    disk: &dyn Disk,
    last_purged: &Option<LogId>,
    data_dir: &str,
) -> Result<Option<u64>, String> {
    let first_kept = last_purged.map_or(0, |id| id.index + 1);
    let rows = disk
        .range(Tree::Log, &log_key(0), None)
        .map_err(|e| format!("{data_dir}: cannot read the log: {e}"))?;
    for (key, value) in rows {
        let index = log_index(&key).map_err(|e| format!("{data_dir}: {e}"))?;
        let sound = envelope::decode::<Entry>(Kind::LogEntry, &value)
            .is_ok_and(|(entry, _version)| entry.index() == index);
        if sound {
            continue;
        }
        if index >= first_kept {
            return Ok(Some(index));
        }
        // Below the purge point: already dropped, waiting for the background purge to
        // delete it; it must not be left where the log's last entry is looked up.
        disk.write(Tree::Log, vec![Write::Delete(key)])
            .map_err(|e| format!("{data_dir}: cannot write: {e}"))?;
    }
    Ok(None)
}

fn raise_floor(floor: Option<VoteFloor>, last_index: u64, vote: Option<&Vote>) -> VoteFloor {
    let term = vote.map_or(0, |v| v.leader_id.term);
    match floor {
        Some(old) => VoteFloor {
            index: old.index.max(last_index),
            term: old.term.max(term),
        },
        None => VoteFloor {
            index: last_index,
            term,
        },
    }
}

/// After a cut, the committed index may point past the log's end: it becomes the last
/// entry kept (a prefix of a committed log is committed).
async fn cap_committed(
    disk: &dyn Disk,
    data_dir: &str,
    last_purged: &Option<LogId>,
) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{data_dir}: {e}");
    let committed: Option<LogId> = log_store::read_meta::<Option<LogId>>(disk, COMMITTED_KEY)
        .map_err(fail)?
        .flatten();
    let last_kept: Option<LogId> = match disk.last(Tree::Log).map_err(fail)? {
        Some((_, value)) => Some(
            envelope::decode::<Entry>(Kind::LogEntry, &value)
                .map_err(|e| format!("{data_dir}: {e}"))?
                .0
                .log_id,
        ),
        None => None,
    };
    let last_kept = last_kept.max(*last_purged);
    if committed > last_kept {
        log_store::write_meta(disk, COMMITTED_KEY, &last_kept).map_err(fail)?;
    }
    Ok(())
}

/// Drops the log and snapshot, keeping the vote and raising the vote floor over everything
/// the log held: the node starts empty and the leader sends it its snapshot.
async fn wipe(
    disk: &dyn Disk,
    data_dir: &str,
    vote: Option<Vote>,
    floor: Option<VoteFloor>,
    mut repairs: Repairs,
) -> Result<(Repairs, Option<VoteFloor>), String> {
    let fail = |e: std::io::Error| format!("{data_dir}: {e}");
    // The log may be all purged: its end is then the purge point.
    let purged_to = log_store::read_meta::<LogId>(disk, LAST_PURGED_KEY)
        .ok()
        .flatten()
        .map_or(0, |id| id.index);
    let last_on_disk = match disk.last(Tree::Log).map_err(fail)? {
        Some((key, _)) => log_index(&key).map_err(fail)?,
        None => 0,
    }
    .max(purged_to);
    let floor = raise_floor(floor, last_on_disk, vote.as_ref());
    let all = disk.range(Tree::Log, &log_key(0), None).map_err(fail)?;
    disk.write(
        Tree::Log,
        all.into_iter().map(|(k, _)| Write::Delete(k)).collect(),
    )
    .map_err(fail)?;
    disk.write(
        Tree::Meta,
        vec![
            Write::Delete(LAST_PURGED_KEY.to_vec()),
            Write::Delete(COMMITTED_KEY.to_vec()),
        ],
    )
    .map_err(fail)?;
    if disk.read_blob(SNAPSHOT_BLOB).map_err(fail)?.is_some() {
        disk.set_aside_blob(SNAPSHOT_BLOB).map_err(fail)?;
    }
    log_store::write_meta(disk, VOTE_FLOOR_KEY, &floor).map_err(fail)?;
    disk.flush().await.map_err(fail)?;
    repairs.push(format!(
        "the state cannot be rebuilt from this disk: log and snapshot dropped (the log held up to {last_on_disk}); the leader sends its snapshot"
    ));
    Ok((repairs, Some(floor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimDisk;
    use crate::log_store::LogStore;
    use crate::state_machine_store::StateMachineStore;
    use crate::types::TypeConfig;
    use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder};
    use openraft::testing::{blank_ent, log_id};
    use openraft::type_config::TypeConfigExt;
    use std::sync::Arc;

    /// A disk with entries 1..=10 of term 2, committed to 10, a vote in term 3, and (with
    /// `snapshot_at`) a snapshot at that index.
    async fn disk_with_log(snapshot_at: Option<u64>) -> Arc<SimDisk> {
        let disk = Arc::new(SimDisk::new());
        let mut log = LogStore::new(
            disk.clone(),
            crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION),
        );
        let (tx, rx) = TypeConfig::oneshot();
        let entries: Vec<Entry> = (1..=10).map(|i| blank_ent::<TypeConfig>(2, 1, i)).collect();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        log.save_committed(Some(log_id::<TypeConfig>(2, 1, 10)))
            .await
            .unwrap();
        if let Some(index) = snapshot_at {
            let mut store = StateMachineStore::open(disk.clone()).unwrap();
            store.write_state().last_applied = Some(log_id::<TypeConfig>(2, 1, index));
            store.build_snapshot().await.unwrap();
        }
        disk.flush().await.unwrap();
        disk
    }

    fn flip(disk: &SimDisk, record: crate::sim_disk::StoredRecord, bit: usize) {
        disk.flip_bit(&record, bit);
    }

    fn log_entry(index: u64) -> crate::sim_disk::StoredRecord {
        crate::sim_disk::StoredRecord::Tree(Tree::Log, log_key(index).to_vec())
    }

    #[tokio::test]
    async fn an_intact_store_is_left_as_it_is() {
        let disk = disk_with_log(Some(4)).await;
        let (repairs, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert!(repairs.is_empty(), "{repairs:?}");
        assert_eq!(floor, None);
    }

    #[tokio::test]
    async fn a_corrupt_entry_past_the_snapshot_cuts_the_log_before_it_and_raises_the_vote_floor() {
        let disk = disk_with_log(Some(4)).await;
        flip(&disk, log_entry(7), 100);
        let (repairs, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert_eq!(repairs.len(), 1, "{repairs:?}");
        assert!(repairs[0].contains("log entry 7 corrupt"), "{repairs:?}");
        assert_eq!(floor, Some(VoteFloor { index: 10, term: 3 }));
        let mut log = LogStore::new(
            disk.clone(),
            crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION),
        );
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|id| id.index), Some(6));
        let committed = log.read_committed().await.unwrap();
        assert_eq!(
            committed.map(|id| id.index),
            Some(6),
            "never past the log's end"
        );
        disk.crash();
        let (again, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert!(again.is_empty(), "the repair is durable: {again:?}");
        assert_eq!(
            floor,
            Some(VoteFloor { index: 10, term: 3 }),
            "and so is the floor"
        );
    }

    #[tokio::test]
    async fn corrupt_entries_the_snapshot_covers_are_purged_and_nothing_is_lost() {
        let disk = disk_with_log(Some(6)).await;
        flip(&disk, log_entry(3), 77);
        let (repairs, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert!(repairs[0].contains("purged"), "{repairs:?}");
        assert_eq!(floor, None, "no entry this node acknowledged is gone");
        let state = LogStore::new(
            disk.clone(),
            crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION),
        )
        .get_log_state()
        .await
        .unwrap();
        assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(6));
        assert_eq!(state.last_log_id.map(|id| id.index), Some(10));
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_over_a_purged_log_leaves_an_empty_node_for_the_leader_to_fill() {
        let disk = disk_with_log(Some(6)).await;
        LogStore::new(
            disk.clone(),
            crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION),
        )
        .purge(log_id::<TypeConfig>(2, 1, 5))
        .await
        .unwrap();
        flip(
            &disk,
            crate::sim_disk::StoredRecord::Blob(SNAPSHOT_BLOB.into()),
            900,
        );
        let (repairs, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert!(
            repairs
                .iter()
                .any(|r| r.contains("snapshot file set aside")),
            "{repairs:?}"
        );
        assert_eq!(floor, Some(VoteFloor { index: 10, term: 3 }));
        let state = LogStore::new(
            disk.clone(),
            crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION),
        )
        .get_log_state()
        .await
        .unwrap();
        assert_eq!(state.last_log_id, None);
        assert!(disk.read_blob(SNAPSHOT_BLOB).unwrap().is_none());
        assert!(
            disk.read_blob("snapshot.corrupt").unwrap().is_some(),
            "kept for its operator"
        );
        StateMachineStore::open(disk).expect("the state machine opens empty");
    }

    /// Seed 101: the purge point rotted on a node whose log was purged. Dropping it left a
    /// log that claimed to start at entry 0, and openraft refused to start on reading it.
    #[tokio::test]
    async fn a_corrupt_purge_point_becomes_the_snapshots_and_the_log_after_it_is_kept() {
        let disk = disk_with_log(Some(6)).await;
        let mut log = LogStore::new(
            disk.clone(),
            crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION),
        );
        log.purge(log_id::<TypeConfig>(2, 1, 4)).await.unwrap();
        for _ in 0..100 {
            if disk
                .range(Tree::Log, &log_key(0), Some(&log_key(5)))
                .unwrap()
                .is_empty()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            disk.range(Tree::Log, &log_key(0), Some(&log_key(5)))
                .unwrap()
                .is_empty(),
            "the purged entries left the disk"
        );
        flip(
            &disk,
            crate::sim_disk::StoredRecord::Tree(Tree::Meta, LAST_PURGED_KEY.to_vec()),
            70,
        );
        let (repairs, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert!(repairs[0].contains("purge point unreadable"), "{repairs:?}");
        assert_eq!(floor, None, "no entry this node acknowledged is gone");
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(6));
        assert_eq!(state.last_log_id.map(|id| id.index), Some(10));
        let first = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(first.first().map(|e| e.index()), Some(7));
        disk.crash();
        let (again, _) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert!(again.is_empty(), "the repair is durable: {again:?}");
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_over_a_whole_log_is_rebuilt_from_the_log() {
        let disk = disk_with_log(Some(6)).await;
        flip(
            &disk,
            crate::sim_disk::StoredRecord::Blob(SNAPSHOT_BLOB.into()),
            900,
        );
        let (_, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert_eq!(floor, None);
        let state = LogStore::new(
            disk.clone(),
            crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION),
        )
        .get_log_state()
        .await
        .unwrap();
        assert_eq!(state.last_log_id.map(|id| id.index), Some(10));
    }

    #[tokio::test]
    async fn a_corrupt_vote_refuses_the_start_naming_the_record_and_the_remedy() {
        let disk = disk_with_log(None).await;
        flip(
            &disk,
            crate::sim_disk::StoredRecord::Tree(Tree::Meta, VOTE_KEY.to_vec()),
            70,
        );
        let error = check_and_repair(disk.as_ref(), "/var/lib/porch")
            .await
            .unwrap_err();
        assert!(error.contains("/var/lib/porch"), "{error}");
        assert!(error.contains("key 'vote'"), "{error}");
        assert!(error.contains("checksum"), "{error}");
        assert!(error.contains("porch cluster remove"), "{error}");
    }

    #[tokio::test]
    async fn a_corrupt_committed_index_is_dropped() {
        let disk = disk_with_log(None).await;
        flip(
            &disk,
            crate::sim_disk::StoredRecord::Tree(Tree::Meta, COMMITTED_KEY.to_vec()),
            60,
        );
        let (repairs, floor) = check_and_repair(disk.as_ref(), "data").await.unwrap();
        assert!(repairs[0].contains("committed index"), "{repairs:?}");
        assert_eq!(floor, None);
        assert_eq!(
            LogStore::new(
                disk,
                crate::written_format::WrittenFormat::new(envelope::FORMAT_VERSION)
            )
            .read_committed()
            .await
            .unwrap(),
            None
        );
    }

    #[test]
    fn the_vote_floor_refuses_candidates_that_may_lack_the_lost_entries() {
        let floor = VoteFloor { index: 10, term: 3 };
        let shorter_same_term = log_id::<TypeConfig>(3, 2, 9);
        let as_long = log_id::<TypeConfig>(3, 2, 10);
        let later_term = log_id::<TypeConfig>(4, 2, 5);
        assert!(!floor.allows(Some(6), Some(&shorter_same_term)));
        assert!(!floor.allows(Some(6), None));
        assert!(floor.allows(Some(6), Some(&as_long)));
        assert!(floor.allows(Some(6), Some(&later_term)));
        assert!(
            floor.allows(Some(10), Some(&shorter_same_term)),
            "once its log is back, openraft's own rule decides"
        );
    }
}
