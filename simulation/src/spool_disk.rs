//! An agent machine's disk for its spool ([`porch_agent::spool_store::SpoolStore`]): writes
//! are visible at once and durable only once synced; when the machine loses power it keeps
//! what was synced plus a drawn prefix of the writes since, the last of which may be torn
//! (cut short); bits of a stored record can rot. It outlives the agent process, as a disk
//! does.

use porch_agent::spool_store::SpoolStore;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    /// What the agent reads.
    current: BTreeMap<String, Vec<u8>>,
    /// What survives a power loss.
    durable: BTreeMap<String, Vec<u8>>,
    /// Writes (`Some`) and removals (`None`) since the last sync, in order.
    unsynced: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Clone, Default)]
pub struct SpoolDisk {
    inner: Arc<Mutex<Inner>>,
}

impl SpoolDisk {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes made since the last sync.
    pub fn unsynced(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// The machine loses power: the disk keeps what was synced and the first `kept` changes
    /// since; with `torn_bytes`, the next write also reached the disk, cut to that many
    /// bytes. Returns how many changes were lost whole.
    pub fn power_loss(&self, kept: usize, torn_bytes: Option<usize>) -> usize {
        let mut inner = self.lock();
        let pending = std::mem::take(&mut inner.unsynced);
        let mut lost = 0;
        for (i, (name, change)) in pending.into_iter().enumerate() {
            match (i.cmp(&kept), change) {
                (std::cmp::Ordering::Less, Some(bytes)) => {
                    inner.durable.insert(name, bytes);
                }
                (std::cmp::Ordering::Less, None) => {
                    inner.durable.remove(&name);
                }
                (std::cmp::Ordering::Equal, Some(bytes)) if torn_bytes.is_some() => {
                    let cut = torn_bytes.unwrap_or(0).min(bytes.len());
                    inner.durable.insert(name, bytes[..cut].to_vec());
                }
                _ => lost += 1,
            }
        }
        inner.current = inner.durable.clone();
        lost
    }

    /// Every record with its length, for bit rot to pick from.
    pub fn records(&self) -> Vec<(String, usize)> {
        self.lock()
            .current
            .iter()
            .map(|(name, bytes)| (name.clone(), bytes.len()))
            .collect()
    }

    /// Flips bit `bit` of record `name`, on disk and in what is read alike.
    pub fn flip_bit(&self, name: &str, bit: usize) {
        let mut inner = self.lock();
        let Inner {
            current, durable, ..
        } = &mut *inner;
        for records in [current, durable] {
            if let Some(byte) = records.get_mut(name).and_then(|b| b.get_mut(bit / 8)) {
                *byte ^= 1 << (bit % 8);
            }
        }
    }
}

impl SpoolStore for SpoolDisk {
    fn list(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .lock()
            .current
            .iter()
            .map(|(name, bytes)| (name.clone(), bytes.clone()))
            .collect())
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        inner.current.insert(name.to_string(), bytes.to_vec());
        inner
            .unsynced
            .push((name.to_string(), Some(bytes.to_vec())));
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut inner = self.lock();
        inner.current.remove(name);
        inner.unsynced.push((name.to_string(), None));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut inner = self.lock();
        for (name, change) in std::mem::take(&mut inner.unsynced) {
            match change {
                Some(bytes) => inner.durable.insert(name, bytes),
                None => inner.durable.remove(&name),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_loss_keeps_synced_records_and_a_torn_prefix_of_the_rest() {
        let disk = SpoolDisk::default();
        disk.write("a", b"synced").unwrap();
        disk.sync().unwrap();
        disk.write("b", b"kept").unwrap();
        disk.write("c", b"cut short").unwrap();
        disk.write("d", b"lost").unwrap();
        assert_eq!(disk.power_loss(1, Some(3)), 1);
        let records: BTreeMap<String, Vec<u8>> = disk.list().unwrap().into_iter().collect();
        assert_eq!(records["a"], b"synced");
        assert_eq!(records["b"], b"kept");
        assert_eq!(records["c"], b"cut");
        assert!(!records.contains_key("d"));
    }
}
