//! porch-simulation (being written).
