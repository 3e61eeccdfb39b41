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

use crate::disk::Disk;
use crate::envelope::{self, EnvelopeError, Kind};
use crate::storage_metrics::SnapshotMetrics;
use crate::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::written_format::WrittenFormat;
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use porch_core::{ClusterState, Outcome};
use serde::Deserialize;
use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tokio::sync::{broadcast, watch};

/// The blob holding the current snapshot.
pub(crate) const SNAPSHOT_BLOB: &str = "snapshot";

/// Applied outcomes kept for slow listeners; a listener that falls further behind is told it
/// lagged and must re-read the state instead.
pub const APPLIED_BROADCAST_CAPACITY: usize = 4096;

/// The state as of a log index.
#[derive(Clone, Debug, Default)]
pub struct AppliedState {
    pub cluster: ClusterState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// What changed the applied state, in order.
#[derive(Clone, Debug)]
pub enum Applied {
    /// One log entry was applied and produced `outcome`.
    Entry { log_index: u64, outcome: Outcome },
    /// The state was replaced by a snapshot from the leader: the entries it covers were never
    /// applied here one by one, so their outcomes were never announced. Listeners must
    /// re-read the state (delivery reconciles every local session).
    Snapshot { last_index: u64 },
}

/// Read access to the applied state, shared between openraft's state machine and the node.
pub struct AppliedView {
    state: RwLock<AppliedState>,
    applied_tx: broadcast::Sender<Applied>,
    applied_index_tx: watch::Sender<u64>,
    written_format: WrittenFormat,
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

    /// Applied outcomes the slowest listener (delivery, the scheduler loop) has not taken
    /// yet; at [`APPLIED_BROADCAST_CAPACITY`] it lags and re-reads the state instead.
    pub fn listener_backlog(&self) -> usize {
        self.applied_tx.len()
    }

    /// The format version this node writes (its cluster's, as of the applied state).
    pub fn written_format(&self) -> WrittenFormat {
        self.written_format.clone()
    }
}

#[derive(Clone)]
pub struct StateMachineStore {
    view: Arc<AppliedView>,
    disk: Arc<dyn Disk>,
    /// The last log id of the snapshot on disk, held while a snapshot is written.
    ///
    /// openraft builds snapshots in a task of their own while the state machine may be
    /// installing one from the leader: unserialised, two writes raced on the same file (a
    /// restarted follower died of it in CI), and a slower build of an older state could land
    /// after a newer installed snapshot whose log the node had already purged, so a restart
    /// would load a state with a hole after it. One writer at a time, and never backwards.
    saved_snapshot: Arc<tokio::sync::Mutex<Option<LogId>>>,
    metrics: Arc<SnapshotMetrics>,
}

impl StateMachineStore {
    /// Opens the state machine: the last snapshot on `disk`, or an empty state.
    pub fn open(disk: Arc<dyn Disk>) -> io::Result<StateMachineStore> {
        StateMachineStore::open_with_capacity(disk, APPLIED_BROADCAST_CAPACITY)
    }

    /// [`StateMachineStore::open`], buffering `applied_capacity` applied outcomes (at least
    /// one) for subscribers before a slow one lags.
    pub fn open_with_capacity(
        disk: Arc<dyn Disk>,
        applied_capacity: usize,
    ) -> io::Result<StateMachineStore> {
        let loaded = load_snapshot(disk.as_ref())?;
        let saved_snapshot = loaded.as_ref().and_then(|(meta, _)| meta.last_log_id);
        let metrics = Arc::new(SnapshotMetrics::default());
        if let Some((meta, data)) = &loaded {
            metrics.record(meta, data.len());
        }
        let state = match loaded {
            Some((_, data)) => decode_state_of(&data, "snapshot file")?,
            None => AppliedState {
                cluster: ClusterState::new(),
                ..AppliedState::default()
            },
        };
        let applied = state.last_applied.map(|id| id.index).unwrap_or(0);
        let (applied_tx, _) = broadcast::channel(applied_capacity.max(1));
        let (applied_index_tx, _) = watch::channel(applied);
        let written_format = WrittenFormat::new(state.cluster.format_version());
        Ok(StateMachineStore {
            view: Arc::new(AppliedView {
                state: RwLock::new(state),
                applied_tx,
                applied_index_tx,
                written_format,
            }),
            disk,
            saved_snapshot: Arc::new(tokio::sync::Mutex::new(saved_snapshot)),
            metrics,
        })
    }

    pub fn view(&self) -> Arc<AppliedView> {
        self.view.clone()
    }

    /// Snapshot sizes and timings (shared with every clone, read by the metrics endpoint).
    pub fn metrics(&self) -> Arc<SnapshotMetrics> {
        self.metrics.clone()
    }

    pub(crate) fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
        self.view.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the snapshot as one blob: `[8-byte meta length][meta][data]` (both enveloped), unless the
    /// snapshot on disk is already newer (see `saved_snapshot`). Returns whether it wrote.
    pub(crate) async fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let mut saved = self.saved_snapshot.lock().await;
        if *saved > meta.last_log_id {
            return Ok(false);
        }
        let record = envelope::encode_at(Kind::SnapshotMeta, self.view.written_format.get(), meta)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut blob = Vec::with_capacity(8 + record.len() + data.len());
        blob.extend_from_slice(&(record.len() as u64).to_be_bytes());
        blob.extend_from_slice(&record);
        blob.extend_from_slice(data);
        self.disk.write_blob(SNAPSHOT_BLOB, blob).await?;
        *saved = meta.last_log_id;
        Ok(true)
    }
}

pub(crate) fn load_snapshot(disk: &dyn Disk) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let Some(blob) = disk.read_blob(SNAPSHOT_BLOB)? else {
        return Ok(None);
    };
    let corrupt = |detail: &str| crate::disk::corrupt(format!("corrupt snapshot file: {detail}"));
    let length: [u8; 8] = blob
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("shorter than its header"))?;
    let length = u64::from_be_bytes(length) as usize;
    let record = blob
        .get(8..8usize.saturating_add(length))
        .ok_or_else(|| corrupt("metadata runs past the end"))?;
    let (meta, _): (SnapshotMeta, u16) =
        envelope::decode(Kind::SnapshotMeta, record).map_err(|e| corrupt(&format!("{e}")))?;
    Ok(Some((meta, blob[8 + length..].to_vec())))
}

/// Snapshot data: the applied log id, membership and cluster state in bincode, inside an
/// envelope (format version, checksum). The state grows with every job kept, and snapshots
/// are taken while the cluster serves; bincode encodes it several times faster than JSON.
/// Encodes on the low-priority background thread (see [`crate::background`]): a large
/// state takes tens of milliseconds of CPU to encode, on every node at about the same time.
async fn encode_off_the_workers(state: AppliedState) -> io::Result<Vec<u8>> {
    crate::background::run(move || encode_state(&state)).await?
}

/// The snapshot data of `state`: what the snapshot file holds after its metadata, what an
/// InstallSnapshot carries, and what a backup holds. Written in the format version the state
/// says its cluster writes, so every member (of either release, mid-upgrade) can install it.
pub fn encode_state(state: &AppliedState) -> io::Result<Vec<u8>> {
    let version = state.cluster.format_version();
    let stored = state
        .cluster
        .stored(version)
        .map_err(|e| io::Error::other(e.to_string()))?;
    envelope::encode_at(
        Kind::Snapshot,
        version,
        &(&state.last_applied, &state.membership, stored),
    )
    .map_err(|e| io::Error::other(e.to_string()))
}

/// Reads what [`encode_state`] wrote, in any format version this build reads; a bad
/// checksum or a newer format is an error naming it.
pub fn decode_state(data: &[u8]) -> Result<AppliedState, EnvelopeError> {
    let (version, payload) = envelope::open(Kind::Snapshot, data)?;
    let undecodable = |e| envelope::undecodable(Kind::Snapshot, e);
    let mut deserializer = bincode::Deserializer::from_slice(payload, envelope::bincode_options());
    let last_applied = Option::<LogId>::deserialize(&mut deserializer).map_err(undecodable)?;
    let membership = StoredMembership::deserialize(&mut deserializer).map_err(undecodable)?;
    let cluster =
        ClusterState::deserialize_stored(version, &mut deserializer).map_err(undecodable)?;
    Ok(AppliedState {
        cluster,
        last_applied,
        membership,
    })
}

pub(crate) fn decode_state_of(data: &[u8], what: &str) -> io::Result<AppliedState> {
    decode_state(data).map_err(|e| crate::disk::corrupt(format!("{what}: {e}")))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        // Copy under the lock, encode outside it: encoding a large state takes long enough
        // to stall `apply` (which needs the write lock) if done while holding it.
        // Wall time is only measured for the log line and the metrics; nothing depends on it.
        let started = std::time::Instant::now();
        let state = self.view.read().clone();
        let copied = started.elapsed();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        let data = encode_off_the_workers(state).await?;
        let encoded = started.elapsed();
        self.save_snapshot(&meta, &data).await?;
        self.metrics.build.observe(started.elapsed());
        self.metrics.record(&meta, data.len());
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            bytes = data.len(),
            copy_ms = copied.as_millis() as u64,
            encode_ms = (encoded - copied).as_millis() as u64,
            write_ms = (started.elapsed() - encoded).as_millis() as u64,
            "snapshot built"
        );
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
                let outcome = match entry.payload {
                    EntryPayload::Blank => Outcome::Done,
                    EntryPayload::Normal(request) => state.cluster.apply(request),
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Outcome::Done
                    }
                };
                self.view.written_format.set(state.cluster.format_version());
                outcome
            };
            // No listener is fine (nobody subscribed yet).
            let _ = self.view.applied_tx.send(Applied::Entry {
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
        let installed = decode_state_of(&snapshot, "received snapshot")?;
        if installed.last_applied != meta.last_log_id {
            return Err(crate::disk::corrupt(format!(
                "received snapshot claims last log id {:?} but holds state at {:?}",
                meta.last_log_id, installed.last_applied
            )));
        }
        if !self.save_snapshot(meta, &snapshot).await? {
            // openraft installs only snapshots past what this node committed, so this does
            // not happen; if it did, the newer snapshot on disk still covers this state.
            tracing::warn!(
                "installing snapshot at {:?}: a newer one is already on disk",
                meta.last_log_id
            );
        }
        let index = installed.last_applied.map(|id| id.index).unwrap_or(0);
        self.view
            .written_format
            .set(installed.cluster.format_version());
        *self.write_state() = installed;
        self.metrics.record(meta, snapshot.len());
        self.metrics
            .installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self
            .view
            .applied_tx
            .send(Applied::Snapshot { last_index: index });
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

#[cfg(test)]
mod tests {
    use super::*;
    use porch_core::{Command, JobSpec, Plan, PlannedNode, Request, Target};

    /// Snapshots carry the state in bincode, which is not self-describing: a serde attribute
    /// that skips a field on output (`skip_serializing_if`) makes every snapshot unreadable.
    /// The simulation caught exactly that (a follower died installing a snapshot).
    #[test]
    fn a_state_with_jobs_runs_and_remembered_outcomes_round_trips_through_a_snapshot() {
        let mut cluster = ClusterState::new();
        let mut now = 1_000;
        let mut apply = |cluster: &mut ClusterState, request_id: Option<&str>, command: Command| {
            now += 1;
            cluster.apply(Request {
                request_id: request_id.map(str::to_string),
                now_ms: now,
                command,
                origin: None,
            })
        };
        apply(
            &mut cluster,
            None,
            Command::SetClusterId {
                cluster_id: "c1".into(),
            },
        );
        let plan = Plan::new(vec![
            PlannedNode {
                name: "db".into(),
                depends_on: vec![],
                components: vec![],
            },
            PlannedNode {
                name: "app".into(),
                depends_on: vec![0],
                components: vec![],
            },
        ])
        .unwrap();
        let spec = JobSpec {
            environment: "production".into(),
            target: Target::Nodes(vec!["db".into(), "app".into()]),
            noop: false,
            no_noop: false,
            concurrency: None,
            enforce_environment: true,
            debug: false,
            trace: false,
            evaltrace: false,
            description: None,
            owner: porch_core::Actor {
                id: "admin".into(),
                login: "admin".into(),
            },
            task: None,
        };
        for (request_id, cap) in [("with-starts", Some(10)), ("without", None)] {
            apply(
                &mut cluster,
                Some(request_id),
                Command::SubmitJob {
                    spec: spec.clone(),
                    plan: plan.clone(),
                    start_under_cap: cap,
                },
            );
        }
        assert_eq!(
            cluster.in_flight().len(),
            1,
            "the first job's db started in its own entry"
        );
        // Access control and the audit log travel in snapshots too (the simulation caught an
        // internally tagged enum, which bincode cannot read).
        let admin = porch_core::access::NewUser {
            id: "u-1".into(),
            login: "admin".into(),
            display_name: "Admin".into(),
            password_hash: "$argon2id$x".into(),
            roles: vec!["admin".into()],
        };
        apply(&mut cluster, None, Command::BootstrapAccess { admin });
        apply(
            &mut cluster,
            None,
            Command::AddRole {
                name: "web".into(),
                description: "web only".into(),
                permissions: vec![porch_core::access::permission::Permission::Run {
                    environments: vec!["production".into()],
                    nodes: vec!["web*".into()],
                    applications: vec![],
                }],
            },
        );
        apply(
            &mut cluster,
            None,
            Command::IssueToken {
                token_id: "t1".into(),
                secret_sha256: [9; 32],
                user_id: "u-1".into(),
                lifetime_ms: 60_000,
                label: Some("cli".into()),
                source: "127.0.0.1:1 via node 1".into(),
            },
        );
        assert_eq!(cluster.audit().len(), 1);
        assert_eq!(cluster.access().roles().count(), 4);
        let state = AppliedState {
            cluster,
            ..AppliedState::default()
        };
        let decoded = decode_state(&encode_state(&state).unwrap()).unwrap();
        assert_eq!(decoded.cluster, state.cluster);
    }

    /// A state whose cluster writes format 3 (the previous release) is snapshotted in format
    /// 3, byte for byte as that release lays it out, and read back by this build; once the
    /// cluster raised its version, snapshots are written in it.
    #[test]
    fn a_snapshot_is_written_in_the_format_its_cluster_writes_and_read_in_either() {
        let mut state = AppliedState {
            cluster: ClusterState::new(),
            ..AppliedState::default()
        };
        let previous = envelope::FORMAT_VERSION_MIN;
        assert_eq!(state.cluster.format_version(), previous);
        let old = encode_state(&state).unwrap();
        assert_eq!(envelope::open(Kind::Snapshot, &old).unwrap().0, previous);
        // The previous release's layout: the tuple of log id, membership and its state.
        let layout = bincode::serialize(&(
            &state.last_applied,
            &state.membership,
            state.cluster.stored(previous).unwrap(),
        ))
        .unwrap();
        assert_eq!(&old[envelope::HEADER_BYTES..], &layout[..]);
        assert_eq!(decode_state(&old).unwrap().cluster, state.cluster);

        state.cluster.apply(porch_core::Request {
            request_id: None,
            now_ms: 1,
            command: Command::SetFormatVersion {
                version: previous + 1,
            },
            origin: None,
        });
        let new = encode_state(&state).unwrap();
        assert_eq!(
            envelope::open(Kind::Snapshot, &new).unwrap().0,
            previous + 1
        );
        assert_eq!(
            decode_state(&new).unwrap().cluster.format_version(),
            previous + 1
        );
    }

    /// A snapshot written by a newer porch, or damaged on the way, is refused and the state
    /// this node holds stays as it was (raft then stops, and the node exits naming it).
    #[tokio::test]
    async fn a_snapshot_in_a_newer_format_or_corrupt_is_refused_and_changes_nothing() {
        let leader = store_at(Arc::new(crate::sim_disk::SimDisk::new()), 10);
        let snapshot = leader.clone().build_snapshot().await.unwrap();
        let mut newer = snapshot.snapshot.clone();
        envelope::restamp_version(&mut newer, envelope::FORMAT_VERSION + 1);
        let mut flipped = snapshot.snapshot.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        for (bytes, expected) in [(newer, "newer than this porch"), (flipped, "checksum")] {
            let mut follower = store_at(Arc::new(crate::sim_disk::SimDisk::new()), 5);
            let error = follower
                .install_snapshot(&snapshot.meta, bytes)
                .await
                .unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(follower.view.read().last_applied.unwrap().index, 5);
            assert!(follower.get_current_snapshot().await.unwrap().is_none());
        }
    }

    fn store_at(disk: Arc<dyn Disk>, index: u64) -> StateMachineStore {
        let store = StateMachineStore::open(disk).unwrap();
        store.write_state().last_applied =
            Some(openraft::testing::log_id::<TypeConfig>(1, 1, index));
        store
    }

    /// A follower builds its own snapshot while installing the leader's newer one: both must
    /// succeed, and the snapshot left on disk is the newer (its log is already purged). Before
    /// writes were serialised, this failed with "No such file or directory" in CI.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn building_while_installing_a_newer_snapshot_keeps_the_newer_one() {
        let leader_state = store_at(Arc::new(crate::sim_disk::SimDisk::new()), 10);
        let newer = leader_state.clone().build_snapshot().await.unwrap();
        for round in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let disk: Arc<dyn Disk> =
                Arc::new(crate::sled_disk::SledDisk::open(dir.path()).unwrap());
            let mut follower = store_at(disk.clone(), 5);
            let mut builder = follower.clone();
            let build = tokio::spawn(async move { builder.build_snapshot().await.map(|s| s.meta) });
            follower
                .install_snapshot(&newer.meta, newer.snapshot.clone())
                .await
                .unwrap_or_else(|e| panic!("round {round}: install failed: {e}"));
            let built = build
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: build failed: {e}"));
            // The build copies the state when its task first runs: before the install (5) as a
            // rule, after it (10) when the machine is loaded enough to delay the task.
            let built = built.last_log_id.unwrap().index;
            assert!(built == 5 || built == 10, "round {round}: built at {built}");
            let on_disk = follower.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(on_disk.meta.last_log_id.unwrap().index, 10, "round {round}");
            drop(follower);
            let reopened = StateMachineStore::open(disk).unwrap();
            assert_eq!(
                reopened.view.read().last_applied.unwrap().index,
                10,
                "round {round}"
            );
        }
    }
}
