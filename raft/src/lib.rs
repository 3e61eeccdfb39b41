//! porch-raft (being written).
