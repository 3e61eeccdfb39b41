//! A data directory remembers which node it belongs to, so a node started with the wrong
//! `--id` or another node's data dir stops with a clear error instead of corrupting a cluster.

use porch_raft::disk::{Disk, Tree, Write};
use serde::{Deserialize, Serialize};

const IDENTITY_KEY: &[u8] = b"identity";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub node_id: u64,
}

/// Whether the data dir was created now (`Fresh`) or already belonged to this node.
#[derive(Debug, PartialEq, Eq)]
pub enum DataDirState {
    Fresh,
    Existing,
}

/// Checks (or, on first start, records) that the data dir belongs to `node_id`.
pub async fn claim(disk: &dyn Disk, node_id: u64, data_dir: &str) -> Result<DataDirState, String> {
    let stored = disk
        .get(Tree::Meta, IDENTITY_KEY)
        .map_err(|e| format!("{data_dir}: cannot read the node identity: {e}"))?;
    match stored {
        Some(bytes) => {
            let identity: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{data_dir}: the node identity record is corrupt: {e}"))?;
            if identity.node_id != node_id {
                return Err(format!(
                    "{data_dir} holds the data of node {}, not node {node_id}; use that node's --id or another --data-dir",
                    identity.node_id
                ));
            }
            Ok(DataDirState::Existing)
        }
        None => {
            let has_log = disk
                .last(Tree::Log)
                .map_err(|e| format!("{data_dir}: {e}"))?
                .is_some();
            if has_log {
                return Err(format!(
                    "{data_dir} holds a raft log but no node identity: not a porch data dir"
                ));
            }
            let bytes = serde_json::to_vec(&Identity { node_id }).map_err(|e| e.to_string())?;
            disk.write(Tree::Meta, vec![Write::Put(IDENTITY_KEY.to_vec(), bytes)])
                .map_err(|e| format!("{data_dir}: cannot write: {e}"))?;
            disk.flush()
                .await
                .map_err(|e| format!("{data_dir}: cannot flush: {e}"))?;
            Ok(DataDirState::Fresh)
        }
    }
}
