//! Backup files, and seeding a new node's data dir from one.
//!
//! A backup file is `PORCHBAK` (8 bytes) then one [`crate::envelope`] of kind `Backup`
//! (format version, checksum) around `(BackupHeader, ClusterState)`: where it came from
//! (cluster id, applied index and term) and the state at that point. Anything that does not
//! start with the magic, is cut short, fails its checksum or comes from a newer porch is
//! refused with a [`BackupError`] naming that, before anything is written.
//!
//! Restoring writes a snapshot of the restored state into an empty data dir, as the founding
//! node of a new cluster: membership = the new cluster's members, at the backed-up applied
//! index in term 0 (below any term the new cluster elects), with the log purged up to it. The
//! founding node then starts as any member does, wins the first election (the other members
//! start empty, so its log is the longest) and sends them the snapshot.

use crate::LogStore;
use crate::disk::{Disk, Tree};
use crate::envelope::{self, EnvelopeError, Kind};
use crate::state_machine_store::{AppliedState, StateMachineStore, encode_state};
use crate::types::{LogId, NodeId, PeerNode, SnapshotMeta, StoredMembership, TypeConfig};
use openraft::RaftTypeConfig;
use openraft::vote::RaftLeaderIdExt;
use porch_core::ClusterState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: &[u8; 8] = b"PORCHBAK";

/// Where a backup came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub cluster_id: Option<String>,
    /// The log position the state is at: every entry committed before the backup's read
    /// barrier is included.
    pub applied_index: u64,
    pub applied_term: u64,
    /// The serving node's clock when the backup was taken.
    pub taken_at_ms: u64,
    pub taken_by_node: NodeId,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "not a porch backup: it does not start with {:?} (found {found:?})",
        String::from_utf8_lossy(BACKUP_MAGIC)
    )]
    NotABackup { found: String },
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
}

/// The bytes of a backup file of `cluster` as of `header`, in the format version its
/// cluster writes (a backup taken mid-upgrade restores with either release).
pub fn encode_backup(
    header: &BackupHeader,
    cluster: &ClusterState,
) -> Result<Vec<u8>, EnvelopeError> {
    let version = cluster.format_version();
    let stored = cluster
        .stored(version)
        .map_err(|e| EnvelopeError::Unencodable {
            kind: Kind::Backup,
            detail: e.to_string(),
        })?;
    let sealed = envelope::encode_at(Kind::Backup, version, &(header, stored))?;
    let mut bytes = Vec::with_capacity(BACKUP_MAGIC.len() + sealed.len());
    bytes.extend_from_slice(BACKUP_MAGIC);
    bytes.extend_from_slice(&sealed);
    Ok(bytes)
}

/// What [`encode_backup`] wrote, checked whole before it is returned.
pub fn decode_backup(bytes: &[u8]) -> Result<(BackupHeader, ClusterState), BackupError> {
    match bytes.strip_prefix(BACKUP_MAGIC.as_slice()) {
        Some(sealed) => {
            let (version, payload) = envelope::open(Kind::Backup, sealed)?;
            let undecodable = |e| envelope::undecodable(Kind::Backup, e);
            let mut deserializer =
                bincode::Deserializer::from_slice(payload, envelope::bincode_options());
            let header = BackupHeader::deserialize(&mut deserializer).map_err(undecodable)?;
            let cluster = ClusterState::deserialize_stored(version, &mut deserializer)
                .map_err(undecodable)?;
            Ok((header, cluster))
        }
        None => Err(BackupError::NotABackup {
            found: String::from_utf8_lossy(&bytes[..bytes.len().min(BACKUP_MAGIC.len())])
                .into_owned(),
        }),
    }
}

/// Whether `disk` holds nothing at all (no log, no metadata, no snapshot).
pub fn is_empty(disk: &dyn Disk) -> std::io::Result<bool> {
    Ok(disk.last(Tree::Log)?.is_none()
        && disk.last(Tree::Meta)?.is_none()
        && disk
            .read_blob(crate::state_machine_store::SNAPSHOT_BLOB)?
            .is_none())
}

/// Seeds an empty `disk` with `cluster` as the founding node of a new cluster of `members`,
/// at log index `applied_index`. Refuses a disk that holds anything.
pub async fn seed(
    disk: std::sync::Arc<dyn Disk>,
    members: BTreeMap<NodeId, PeerNode>,
    founder: NodeId,
    applied_index: u64,
    cluster: ClusterState,
) -> std::io::Result<()> {
    if !is_empty(disk.as_ref())? {
        return Err(std::io::Error::other("the data dir is not empty"));
    }
    let log_id: LogId = LogId::new(
        <TypeConfig as RaftTypeConfig>::LeaderId::new_committed(0, founder),
        applied_index,
    );
    let membership = StoredMembership::new(Some(log_id), members.into());
    let state = AppliedState {
        cluster,
        last_applied: Some(log_id),
        membership: membership.clone(),
    };
    let data = encode_state(&state)?;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: membership,
    };
    let store = StateMachineStore::open(disk.clone())?;
    store.save_snapshot(&meta, &data).await?;
    LogStore::new(disk, store.view().written_format())
        .seed_after_snapshot(log_id)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup() -> Vec<u8> {
        let header = BackupHeader {
            cluster_id: Some("c1".into()),
            applied_index: 42,
            applied_term: 3,
            taken_at_ms: 1_000,
            taken_by_node: 2,
        };
        encode_backup(&header, &ClusterState::new()).unwrap()
    }

    #[test]
    fn a_backup_round_trips_with_its_header() {
        let (header, state) = decode_backup(&backup()).unwrap();
        assert_eq!(header.applied_index, 42);
        assert_eq!(header.cluster_id.as_deref(), Some("c1"));
        assert_eq!(state.next_job_id(), ClusterState::new().next_job_id());
    }

    #[test]
    fn a_truncated_or_foreign_file_is_refused_naming_the_problem() {
        let good = backup();
        let truncated = decode_backup(&good[..good.len() - 1]).unwrap_err();
        assert!(truncated.to_string().contains("checksum"), "{truncated}");
        let header_only = decode_backup(&good[..10]).unwrap_err();
        assert!(header_only.to_string().contains("shorter"), "{header_only}");
        let foreign = decode_backup(b"{\"jobs\": []}").unwrap_err();
        assert!(
            foreign.to_string().contains("not a porch backup"),
            "{foreign}"
        );
        let mut newer = good.clone();
        envelope::restamp_version(
            &mut newer[BACKUP_MAGIC.len()..],
            envelope::FORMAT_VERSION + 1,
        );
        let newer = decode_backup(&newer).unwrap_err();
        assert!(
            newer.to_string().contains("newer than this porch"),
            "{newer}"
        );
    }

    #[tokio::test]
    async fn seeding_refuses_a_disk_that_holds_anything() {
        let disk: std::sync::Arc<dyn Disk> = std::sync::Arc::new(crate::SimDisk::new());
        let members: BTreeMap<NodeId, PeerNode> = [(1, PeerNode::at("a:1"))].into();
        seed(disk.clone(), members.clone(), 1, 42, ClusterState::new())
            .await
            .unwrap();
        let again = seed(disk.clone(), members, 1, 42, ClusterState::new()).await;
        assert!(again.is_err());
        let store = StateMachineStore::open(disk).unwrap();
        assert_eq!(store.view().read().last_applied.unwrap().index, 42);
    }
}
