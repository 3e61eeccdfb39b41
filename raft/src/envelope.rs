//! The envelope around every stored or transmitted porch record: log entries (sled's `log`
//! tree), snapshots (the blob on disk, and the bytes an InstallSnapshot carries), raft RPC
//! messages and backup files.
//!
//! Layout, fixed for every format version to come (only the payload may change):
//!
//! ```text
//! [kind: 1 byte][format version: u16 LE][crc32: u32 LE][payload: bincode]
//! ```
//!
//! The CRC-32 covers the kind, the version and the payload, so a flipped bit anywhere —
//! torn write, bad sector, truncation — is detected before anything is decoded, let alone
//! applied. A record whose checksum holds but whose version is newer than
//! [`FORMAT_VERSION`] was written by a newer porch: it is refused, naming both versions (the
//! caller stops rather than guess at the bytes). Versions from [`FORMAT_VERSION_MIN`] up are
//! read: the caller writes the version its cluster agreed on (`porch_core::format_version`
//! says which and why), so a record's version is whatever the cluster wrote at the time. CRC-32 via `crc32fast`: already in the build
//! (sled uses it), hardware-accelerated (PCLMULQDQ / ARM CRC), and it detects every burst
//! error up to 32 bits; a cryptographic hash would guard against no failure disks have.
//!
//! Raise the format version whenever the bincode layout of anything enveloped changes
//! (`porch_core::Request`, `ClusterState`, openraft's records): bincode is not
//! self-describing, so a changed layout read by an older node would decode to garbage or fail
//! without saying why. Only the snapshot's and the backup's state changed layout between the
//! versions this build reads (`porch_core::stored_state`); entries, messages and snapshot
//! metadata decode alike in each.

pub use porch_core::format_version::{FORMAT_VERSION, FORMAT_VERSION_MIN};
use serde::Serialize;
use serde::de::DeserializeOwned;
/// Bytes before the payload.
pub const HEADER_BYTES: usize = 7;

/// What a record holds: a record of one kind is never read as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One raft log entry, as the log store keeps it.
    LogEntry,
    /// A snapshot's data: the applied log id, membership and cluster state.
    Snapshot,
    /// The metadata openraft keeps beside a snapshot on disk.
    SnapshotMeta,
    /// One raft RPC request or reply.
    Message,
    /// A backup file's body (after its magic).
    Backup,
    /// A raft metadata record: vote, committed index, purge point, vote floor.
    RaftMeta,
}

impl Kind {
    pub(crate) fn tag(self) -> u8 {
        match self {
            Kind::LogEntry => b'E',
            Kind::Snapshot => b'S',
            Kind::SnapshotMeta => b'T',
            Kind::Message => b'M',
            Kind::Backup => b'B',
            Kind::RaftMeta => b'R',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::LogEntry => "log entry",
            Kind::Snapshot => "snapshot",
            Kind::SnapshotMeta => "snapshot metadata",
            Kind::Message => "raft message",
            Kind::Backup => "backup",
            Kind::RaftMeta => "raft metadata record",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("{kind} of {len} bytes is shorter than its {HEADER_BYTES}-byte header (truncated?)")]
    Truncated { kind: Kind, len: usize },
    #[error("expected a {expected}, found a record tagged {found:#04x} (not a porch {expected})")]
    WrongKind { expected: Kind, found: u8 },
    #[error(
        "corrupt {kind}: checksum {stored:08x} stored, {computed:08x} computed over {len} bytes"
    )]
    Checksum {
        kind: Kind,
        stored: u32,
        computed: u32,
        len: usize,
    },
    #[error(
        "{kind} in format version {found}, newer than this porch understands (up to \
         {FORMAT_VERSION}): upgrade this node before it reads it"
    )]
    NewerVersion { kind: Kind, found: u16 },
    #[error(
        "{kind} in format version {found}, older than this porch reads (from \
         {FORMAT_VERSION_MIN})"
    )]
    OlderVersion { kind: Kind, found: u16 },
    #[error("corrupt {kind}: checksum holds but the payload does not decode: {detail}")]
    Undecodable { kind: Kind, detail: String },
    #[error("cannot encode a {kind}: {detail}")]
    Unencodable { kind: Kind, detail: String },
}

/// `value` in bincode, inside an envelope of `kind` at format `version` (the caller laid
/// `value` out as that version does).
pub fn encode_at<T: Serialize + ?Sized>(
    kind: Kind,
    version: u16,
    value: &T,
) -> Result<Vec<u8>, EnvelopeError> {
    let unencodable = |e: bincode::Error| EnvelopeError::Unencodable {
        kind,
        detail: e.to_string(),
    };
    // Sized first and encoded in place: a snapshot runs to tens of megabytes, and growing
    // the buffer (or copying the payload behind a header) doubles the memory traffic.
    let payload_len = bincode::serialized_size(value).map_err(unencodable)?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload_len as usize);
    bytes.push(kind.tag());
    debug_assert!((FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version));
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bincode::serialize_into(&mut bytes, value).map_err(unencodable)?;
    let crc = checksum(&bytes);
    bytes[3..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// The value [`encode_at`] sealed, after checking kind, checksum and version, with the
/// version it was written in. For records whose layout is the same in every version this
/// build reads (entries, messages, snapshot metadata); the state's is read with [`open`].
pub fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<(T, u16), EnvelopeError> {
    let (version, payload) = open(kind, bytes)?;
    let value = bincode::deserialize(payload).map_err(|e| undecodable(kind, e))?;
    Ok((value, version))
}

pub fn undecodable(kind: Kind, error: impl std::fmt::Display) -> EnvelopeError {
    EnvelopeError::Undecodable {
        kind,
        detail: error.to_string(),
    }
}

/// The bincode options `bincode::serialize` and `deserialize` use, for reading a payload
/// piece by piece (a state whose layout depends on the version).
pub fn bincode_options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

/// The format version and payload of a checked envelope.
pub fn open(kind: Kind, bytes: &[u8]) -> Result<(u16, &[u8]), EnvelopeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(EnvelopeError::Truncated {
            kind,
            len: bytes.len(),
        });
    }
    if bytes[0] != kind.tag() {
        return Err(EnvelopeError::WrongKind {
            expected: kind,
            found: bytes[0],
        });
    }
    let stored = u32::from_le_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]);
    let computed = checksum(bytes);
    if stored != computed && !porch_core::planted::active(porch_core::planted::Bug::SkipChecksum) {
        return Err(EnvelopeError::Checksum {
            kind,
            stored,
            computed,
            len: bytes.len(),
        });
    }
    // After the checksum: a version field that holds a newer number was written so.
    let version = u16::from_le_bytes([bytes[1], bytes[2]]);
    if version > FORMAT_VERSION {
        return Err(EnvelopeError::NewerVersion {
            kind,
            found: version,
        });
    }
    if version < FORMAT_VERSION_MIN {
        return Err(EnvelopeError::OlderVersion {
            kind,
            found: version,
        });
    }
    Ok((version, &bytes[HEADER_BYTES..]))
}

/// CRC-32 of kind, version and payload (everything but the checksum field itself).
fn checksum(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..3]);
    hasher.update(&bytes[HEADER_BYTES..]);
    hasher.finalize()
}

/// Re-seals `bytes` as if written at format `version` (tests of other crates and the
/// simulation plant records from a future porch with it).
pub fn restamp_version(bytes: &mut [u8], version: u16) {
    if bytes.len() < HEADER_BYTES {
        return;
    }
    bytes[1..3].copy_from_slice(&version.to_le_bytes());
    let crc = checksum(bytes);
    bytes[3..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Vec<u8> {
        encode_at(
            Kind::LogEntry,
            FORMAT_VERSION,
            &("job", 42u64, vec![1u8, 2, 3]),
        )
        .unwrap()
    }

    #[test]
    fn a_record_round_trips() {
        let back: (String, u64, Vec<u8>) = decode(Kind::LogEntry, &sealed()).unwrap().0;
        assert_eq!(back, ("job".to_string(), 42, vec![1, 2, 3]));
    }

    #[test]
    fn every_version_from_the_previous_release_on_is_read_and_named() {
        for version in FORMAT_VERSION_MIN..=FORMAT_VERSION {
            let sealed = encode_at(Kind::LogEntry, version, &7u64).unwrap();
            assert_eq!(decode::<u64>(Kind::LogEntry, &sealed), Ok((7, version)));
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let good = sealed();
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let result = decode::<(String, u64, Vec<u8>)>(Kind::LogEntry, &bad);
            assert!(
                matches!(
                    result,
                    Err(EnvelopeError::Checksum { .. } | EnvelopeError::WrongKind { .. })
                ),
                "bit {bit}: {result:?}"
            );
        }
    }

    #[test]
    fn a_truncated_record_is_refused() {
        let good = sealed();
        for len in 0..good.len() {
            let result = decode::<(String, u64, Vec<u8>)>(Kind::LogEntry, &good[..len]);
            assert!(
                matches!(
                    result,
                    Err(EnvelopeError::Checksum { .. } | EnvelopeError::Truncated { .. })
                ),
                "{len} bytes: {result:?}"
            );
        }
    }

    #[test]
    fn a_newer_version_is_refused_naming_both_versions() {
        let mut newer = sealed();
        restamp_version(&mut newer, FORMAT_VERSION + 1);
        let error = decode::<(String, u64, Vec<u8>)>(Kind::LogEntry, &newer).unwrap_err();
        assert_eq!(
            error,
            EnvelopeError::NewerVersion {
                kind: Kind::LogEntry,
                found: FORMAT_VERSION + 1
            }
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("version {}", FORMAT_VERSION + 1))
                && message.contains(&format!("up to {FORMAT_VERSION}")),
            "{message}"
        );
    }

    #[test]
    fn a_record_older_than_this_build_reads_is_refused() {
        let mut older = sealed();
        restamp_version(&mut older, FORMAT_VERSION_MIN - 1);
        let error = decode::<(String, u64, Vec<u8>)>(Kind::LogEntry, &older).unwrap_err();
        assert!(
            matches!(error, EnvelopeError::OlderVersion { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_record_of_another_kind_is_refused() {
        let error = decode::<(String, u64, Vec<u8>)>(Kind::Snapshot, &sealed()).unwrap_err();
        assert!(matches!(error, EnvelopeError::WrongKind { .. }), "{error}");
    }

    #[test]
    fn a_lying_length_inside_a_valid_envelope_is_an_error_not_an_allocation() {
        let lying = encode_at(Kind::Message, FORMAT_VERSION, &u64::MAX).unwrap();
        let result = decode::<Vec<u8>>(Kind::Message, &lying);
        assert!(
            matches!(result, Err(EnvelopeError::Undecodable { .. })),
            "{result:?}"
        );
    }
}
