//! porch-node (being written).
