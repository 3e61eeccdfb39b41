//! porch-lang (being written).
