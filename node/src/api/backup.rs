//! `GET /orchestrator/v1/cluster/backup` (admin): a consistent, linearizable backup of the
//! replicated state while the cluster serves.
//!
//! The read barrier (the leader confirms its leadership with a quorum and names its commit
//! index; this node waits until it applied that far) makes the backup include every write
//! acknowledged before the request arrived, on whichever node serves it. The state is then
//! copied in O(1) (persistent maps) and encoded on the low-priority background thread, so
//! `apply` and the request path never wait for the encoding.

use super::ApiState;
use super::error::ApiError;
use crate::access::principal::Principal;
use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use porch_core::access::permission::Action;
use porch_raft::backup::{BackupHeader, encode_backup};
use std::sync::Arc;

/// The header naming the applied index a backup holds (the client reports it).
pub const BACKUP_INDEX_HEADER: &str = "x-porch-backup-index";

pub async fn backup(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    principal.require(&state, &Action::Admin)?;
    state.consensus.read_barrier().await?;
    let applied = state.consensus.view.read().clone();
    let last_applied = applied.last_applied;
    let header = BackupHeader {
        cluster_id: applied.cluster.cluster_id().map(str::to_string),
        applied_index: last_applied.map_or(0, |id| id.index),
        applied_term: last_applied.map_or(0, |id| id.leader_id.term),
        taken_at_ms: state.consensus.clock().now_ms(),
        taken_by_node: state.consensus.id,
    };
    let applied_index = header.applied_index;
    let bytes = porch_raft::background::run(move || encode_backup(&header, &applied.cluster))
        .await
        .map_err(|e| ApiError::internal(format!("cannot encode the backup: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot encode the backup: {e}")))?;
    tracing::info!(
        applied_index,
        bytes = bytes.len(),
        by = %principal.actor.login,
        "backup taken"
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static(BACKUP_INDEX_HEADER),
                applied_index.to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
