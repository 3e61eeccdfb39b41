//! openraft's state machine: [`ClusterState`] in memory, snapshots on a [`Disk`].
//!
//! Persistence follows openraft's "transient state machine + persisted snapshot +
//! `save_committed`" pattern: after a restart the state is the last snapshot, and openraft
//! re-applies the committed log after it. Since `ClusterState::apply` is deterministic, the
//! rebuilt state is exactly the one before the crash. The state is never written on the apply
//! path, which keeps apply fast; snapshots bound both replay time and the log on disk.
//!
//! Everything the node needs from applied entries comes out of here: [`AppliedView`] gives
//! read access to the state and a broadcast of each applied outcome (the node delivers runs
//! to agents from it — dispatch happens only after the decision is committed *and* applied).

use crate::disk::{Disk, Tree, Write};
use crate::log_store::{decode, encode};
use crate::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use porch_core::{ClusterState, Outcome};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tokio::sync::{broadcast, watch};

const SNAPSHOT_META_KEY: &[u8] = b"meta";
const SNAPSHOT_DATA_KEY: &[u8] = b"data";

/// Applied outcomes kept for slow listeners; a listener that falls further behind is told it
/// lagged and must re-read the state instead.
pub const APPLIED_BROADCAST_CAPACITY: usize = 4096;

/// The state as of a log index.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AppliedState {
    pub cluster: ClusterState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// One applied normal entry and what applying it produced.
#[derive(Clone, Debug)]
pub struct Applied {
    pub log_index: u64,
    pub outcome: Outcome,
}

/// Read access to the applied state, shared between openraft's state machine and the node.
pub struct AppliedView {
    state: RwLock<AppliedState>,
    applied_tx: broadcast::Sender<Applied>,
    applied_index_tx: watch::Sender<u64>,
}

impl AppliedView {
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every outcome applied from now on, in log order.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.applied_tx.subscribe()
    }

    /// The last applied log index, updated after each applied batch.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_index_tx.subscribe()
    }
}

#[derive(Clone)]
pub struct StateMachineStore {
    view: Arc<AppliedView>,
    disk: Arc<dyn Disk>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMeta,
}

impl StateMachineStore {
    /// Opens the state machine: the last snapshot on `disk`, or an empty state.
    pub fn open(disk: Arc<dyn Disk>) -> io::Result<StateMachineStore> {
        let state = match load_snapshot(disk.as_ref())? {
            Some((_, data)) => decode::<AppliedState>(&data, "snapshot")?,
            None => AppliedState {
                cluster: ClusterState::new(),
                ..AppliedState::default()
            },
        };
        let applied = state.last_applied.map(|id| id.index).unwrap_or(0);
        let (applied_tx, _) = broadcast::channel(APPLIED_BROADCAST_CAPACITY);
        let (applied_index_tx, _) = watch::channel(applied);
        Ok(StateMachineStore {
            view: Arc::new(AppliedView {
                state: RwLock::new(state),
                applied_tx,
                applied_index_tx,
            }),
            disk,
        })
    }

    pub fn view(&self) -> Arc<AppliedView> {
        self.view.clone()
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
        self.view.state.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let record = encode(&SnapshotRecord { meta: meta.clone() })?;
        self.disk.write(
            Tree::Snapshot,
            vec![
                Write::Put(SNAPSHOT_META_KEY.to_vec(), record),
                Write::Put(SNAPSHOT_DATA_KEY.to_vec(), data.to_vec()),
            ],
        )?;
        self.disk.flush().await
    }
}

fn load_snapshot(disk: &dyn Disk) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let meta = disk.get(Tree::Snapshot, SNAPSHOT_META_KEY)?;
    let data = disk.get(Tree::Snapshot, SNAPSHOT_DATA_KEY)?;
    match (meta, data) {
        (Some(meta), Some(data)) => {
            let record: SnapshotRecord = decode(&meta, "snapshot metadata")?;
            Ok(Some((record.meta, data)))
        }
        (None, None) => Ok(None),
        _ => Err(crate::disk::corrupt(
            "snapshot metadata and data are not both present",
        )),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        // Copy under the lock, encode outside it: encoding a large state takes long enough
        // to stall `apply` (which needs the write lock) if done while holding it.
        let state = self.view.read().clone();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        let data = encode(&state)?;
        self.save_snapshot(&meta, &data).await?;
        Ok(openraft::storage::Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.view.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut last_index = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index;
            let outcome = {
                let mut state = self.write_state();
                state.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Outcome::Done,
                    EntryPayload::Normal(request) => state.cluster.apply(request),
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Outcome::Done
                    }
                }
            };
            // No listener is fine (nobody subscribed yet).
            let _ = self.view.applied_tx.send(Applied {
                log_index: index,
                outcome: outcome.clone(),
            });
            if let Some(responder) = responder {
                responder.send(outcome);
            }
            last_index = Some(index);
        }
        if let Some(index) = last_index {
            self.view.applied_index_tx.send_replace(index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let installed: AppliedState = decode(&snapshot, "received snapshot")?;
        if installed.last_applied != meta.last_log_id {
            return Err(crate::disk::corrupt(format!(
                "received snapshot claims last log id {:?} but holds state at {:?}",
                meta.last_log_id, installed.last_applied
            )));
        }
        self.save_snapshot(meta, &snapshot).await?;
        let index = installed.last_applied.map(|id| id.index).unwrap_or(0);
        *self.write_state() = installed;
        self.view.applied_index_tx.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>>, io::Error>
    {
        Ok(
            load_snapshot(self.disk.as_ref())?.map(|(meta, data)| openraft::storage::Snapshot {
                meta,
                snapshot: data,
            }),
        )
    }
}
