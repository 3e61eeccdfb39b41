//! openraft's own storage conformance suite, run against porch's log store and state machine
//! on both disks: sled (production) and the simulation's in-memory disk.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use porch_raft::{Disk, LogStore, SimDisk, SledDisk, StateMachineStore, TypeConfig};
use std::sync::Arc;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk: Arc<dyn Disk> = Arc::new(SledDisk::open(dir.path()).expect("open sled"));
        let sm = StateMachineStore::open(disk.clone()).expect("open state machine");
        Ok((dir, LogStore::new(disk, sm.view().written_format()), sm))
    }
}

struct SimBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, ()> for SimBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let sm = StateMachineStore::open(disk.clone()).expect("open state machine");
        Ok(((), LogStore::new(disk, sm.view().written_format()), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(SledBuilder).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(SimBuilder).await
}
