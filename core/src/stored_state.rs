//! [`ClusterState`] as each readable format version stores it (in snapshots and backups), and
//! the conversions between those layouts and the state in memory.
//!
//! bincode is positional and not self-describing, so each version's layout is a struct of its
//! own, frozen once released: decoding goes through the layout of the version the record
//! says it was written in, then converts; encoding borrows the state into the layout of the
//! version the cluster writes. Fields are `Cow`s so one struct serves both directions without
//! copying the state (`Borrowed` to write, `Owned` once read).

use crate::access::AccessState;
use crate::audit::AuditLog;
use crate::format_version::{FORMAT_VERSION, FORMAT_VERSION_MIN};
use crate::ids::JobId;
use crate::inventory::Inventory;
use crate::job::Job;
use crate::request_log::RequestLog;
use crate::schedule::Schedules;
use crate::state::{ClusterState, TransactionRef};
use imbl::OrdMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Format 3: every field but the derived indexes, in order.
#[derive(Serialize, Deserialize)]
pub struct StoredV3<'a> {
    pub(crate) cluster_id: Cow<'a, Option<String>>,
    pub(crate) clock_ms: u64,
    pub(crate) next_job_id: u64,
    pub(crate) next_event_id: u64,
    pub(crate) jobs: Cow<'a, OrdMap<JobId, Arc<Job>>>,
    pub(crate) in_flight: Cow<'a, BTreeMap<String, TransactionRef>>,
    pub(crate) busy_nodes: Cow<'a, BTreeMap<String, String>>,
    pub(crate) inventory: Cow<'a, Inventory>,
    pub(crate) requests: Cow<'a, RequestLog>,
    pub(crate) access: Cow<'a, AccessState>,
    pub(crate) audit: Cow<'a, AuditLog>,
}

/// Format 4: format 3's fields, then the format version the cluster writes and the scheduled
/// jobs. (A nested struct is encoded by bincode exactly as its fields in line.)
#[derive(Serialize, Deserialize)]
pub struct StoredV4<'a> {
    pub(crate) v3: StoredV3<'a>,
    pub(crate) format_version: u16,
    pub(crate) schedules: Cow<'a, Schedules>,
}

/// The state in the layout of one readable format version.
pub enum StoredState<'a> {
    V3(StoredV3<'a>),
    V4(StoredV4<'a>),
}

/// A version this build cannot write (outside [`FORMAT_VERSION_MIN`]..=[`FORMAT_VERSION`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "format version {0} is not one this porch writes ({FORMAT_VERSION_MIN} to {FORMAT_VERSION})"
)]
pub struct UnknownFormatVersion(pub u16);

impl Serialize for StoredState<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StoredState::V3(stored) => stored.serialize(serializer),
            StoredState::V4(stored) => stored.serialize(serializer),
        }
    }
}

impl ClusterState {
    /// This state in the layout of format `version`, borrowed (nothing is copied).
    pub fn stored(&self, version: u16) -> Result<StoredState<'_>, UnknownFormatVersion> {
        let v3 = StoredV3 {
            cluster_id: Cow::Borrowed(&self.cluster_id),
            clock_ms: self.clock_ms,
            next_job_id: self.next_job_id,
            next_event_id: self.next_event_id,
            jobs: Cow::Borrowed(&self.jobs),
            in_flight: Cow::Borrowed(&self.in_flight),
            busy_nodes: Cow::Borrowed(&self.busy_nodes),
            inventory: Cow::Borrowed(&self.inventory),
            requests: Cow::Borrowed(&self.requests),
            access: Cow::Borrowed(&self.access),
            audit: Cow::Borrowed(&self.audit),
        };
        match version {
            // No schedule exists while the cluster writes format 3 (`SCHEDULES_SINCE`).
            3 => Ok(StoredState::V3(v3)),
            4 => Ok(StoredState::V4(StoredV4 {
                v3,
                format_version: self.format_version,
                schedules: Cow::Borrowed(&self.schedules),
            })),
            other => Err(UnknownFormatVersion(other)),
        }
    }

    /// Reads a state stored in format `version` (as a record's envelope names it).
    pub fn deserialize_stored<'de, D: Deserializer<'de>>(
        version: u16,
        deserializer: D,
    ) -> Result<ClusterState, D::Error> {
        match version {
            // Written before the cluster agreed on a version: it wrote format 3.
            3 => StoredV3::deserialize(deserializer)
                .map(|v3| ClusterState::from_stored(v3, 3, Schedules::default())),
            4 => StoredV4::deserialize(deserializer).map(|v4| {
                ClusterState::from_stored(v4.v3, v4.format_version, v4.schedules.into_owned())
            }),
            other => Err(serde::de::Error::custom(UnknownFormatVersion(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Request};

    fn state() -> ClusterState {
        let mut state = ClusterState::new();
        state.apply(Request {
            request_id: Some("r1".into()),
            now_ms: 5,
            command: Command::SetClusterId {
                cluster_id: "c1".into(),
            },
            origin: None,
        });
        state
    }

    fn round_trip(state: &ClusterState, version: u16) -> ClusterState {
        let bytes = bincode::serialize(&state.stored(version).unwrap()).unwrap();
        let mut deserializer = bincode::Deserializer::from_slice(
            &bytes,
            bincode::DefaultOptions::new().with_fixint_encoding(),
        );
        ClusterState::deserialize_stored(version, &mut deserializer).unwrap()
    }

    use bincode::Options;

    #[test]
    fn a_state_round_trips_in_every_readable_format() {
        let mut state = state();
        state.format_version = FORMAT_VERSION;
        for version in FORMAT_VERSION_MIN..=FORMAT_VERSION {
            let back = round_trip(&state, version);
            assert_eq!(back.cluster_id(), Some("c1"), "format {version}");
            assert_eq!(back.clock_ms(), 5, "format {version}");
        }
    }

    #[test]
    fn a_format_3_state_is_read_as_a_cluster_writing_format_3() {
        let mut state = state();
        state.format_version = FORMAT_VERSION;
        assert_eq!(round_trip(&state, 3).format_version(), 3);
        assert_eq!(round_trip(&state, 4).format_version(), FORMAT_VERSION);
    }

    /// Format 3 is what the previous release wrote: its layout must be byte for byte the
    /// fields it had, so an older node reads what this one writes for it.
    #[test]
    fn format_3_is_format_4_without_the_version_and_schedules_that_follow() {
        let state = state();
        let v3 = bincode::serialize(&state.stored(3).unwrap()).unwrap();
        let v4 = bincode::serialize(&state.stored(4).unwrap()).unwrap();
        assert_eq!(&v4[..v3.len()], &v3[..]);
        let mut rest = state.format_version().to_le_bytes().to_vec();
        rest.extend(bincode::serialize(state.schedules()).unwrap());
        assert_eq!(&v4[v3.len()..], &rest[..]);
    }

    #[test]
    fn a_version_this_build_does_not_know_is_an_error() {
        let state = state();
        assert_eq!(
            state.stored(FORMAT_VERSION + 1).err(),
            Some(UnknownFormatVersion(FORMAT_VERSION + 1))
        );
        assert!(state.stored(FORMAT_VERSION_MIN - 1).is_err());
    }
}
