//! The byte format of raft messages: bincode inside an [`crate::envelope`] of kind `Message`
//! (format version and checksum), so a message from a newer porch is refused naming both
//! versions instead of being misread. A request is sealed in the version its cluster writes
//! (see [`crate::WrittenFormat`]); a reply in the version of the request it answers, which
//! its sender reads by construction.
//!
//! Why bincode, not JSON: at one client, encoding and decoding an entry as JSON cost tens of
//! µs at each of its five passes (leader log, leader read for replication, RPC, follower
//! decode, follower log), and a snapshot's bytes travelled as a JSON array of numbers.

use crate::envelope::{self, EnvelopeError, Kind};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize>(version: u16, value: &T) -> Result<Vec<u8>, EnvelopeError> {
    envelope::encode_at(Kind::Message, version, value)
}

/// The message and the format version it was sealed in.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, u16), EnvelopeError> {
    envelope::decode(Kind::Message, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, TypeConfig};
    use openraft::testing::blank_ent;

    #[test]
    fn entries_round_trip() {
        let entry: Entry = blank_ent::<TypeConfig>(3, 2, 17);
        for version in envelope::FORMAT_VERSION_MIN..=envelope::FORMAT_VERSION {
            let (back, read): (Entry, u16) = decode(&encode(version, &entry).unwrap()).unwrap();
            assert_eq!((back.log_id, read), (entry.log_id, version));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<Entry>(&[b'M', 1, 0, 0xff, 0xff]).is_err());
        assert!(decode::<Entry>(b"not a message").is_err());
        assert!(decode::<Entry>(&[]).is_err());
    }
}
