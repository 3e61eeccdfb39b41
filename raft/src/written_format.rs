//! The format version this node writes its records in: the one its cluster agreed on
//! (`porch_core::format_version`), as of the state this node applied. The state machine moves
//! it when it applies or installs a state; the log store and the network seal with it.

use crate::types::Entry;
use openraft::EntryPayload;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

#[derive(Clone, Debug)]
pub struct WrittenFormat(Arc<AtomicU16>);

impl WrittenFormat {
    pub fn new(version: u16) -> WrittenFormat {
        WrittenFormat(Arc::new(AtomicU16::new(version)))
    }

    /// The version the cluster writes, as far as this node applied.
    pub fn get(&self) -> u16 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, version: u16) {
        self.0.store(version, Ordering::Relaxed);
    }

    /// The version to seal `entries` in: the cluster's, or the version one of them needs if
    /// newer (the entry raising the cluster's version is written in the version it raises to).
    pub fn for_entries<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>) -> u16 {
        entries
            .into_iter()
            .map(format_version_needed)
            .fold(self.get(), u16::max)
    }
}

fn format_version_needed(entry: &Entry) -> u16 {
    match &entry.payload {
        EntryPayload::Normal(request) => request.command.format_version_needed(),
        EntryPayload::Blank | EntryPayload::Membership(_) => 0,
    }
}
