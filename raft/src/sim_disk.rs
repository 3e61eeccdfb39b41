//! [`Disk`] in memory, for the simulation: visible at once, durable only when flushed, and a
//! power loss throws away what was not flushed, or keeps a prefix of it (a torn flush: the
//! disk wrote some of the queued writes, in order, before the power went) — the failure
//! model of sled with the background flusher off. Flushes take a set time (real fsyncs do, and
//! a write acknowledged before its flush completed is exposed only if the flush takes time),
//! and can be made to fail. The disk outlives the simulated node that uses it, as a real disk
//! would.

use crate::disk::{Disk, Tree, Write};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Trees = BTreeMap<Tree, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Default)]
struct Inner {
    /// What reads see.
    current: Trees,
    /// What survives a crash.
    durable: Trees,
    /// Writes not yet durable, in order.
    unflushed: Vec<(Tree, Vec<Write>)>,
    /// Batches ever written, and the number of them that are durable (or were lost): the
    /// first of `unflushed` is batch number `settled`.
    written: u64,
    settled: u64,
    /// Power losses so far: a flush under way when the power went completes nothing.
    power_losses: u64,
    /// The power is off: writes and flushes fail.
    off: bool,
    /// Blobs are durable as soon as written (as with write + fsync + rename).
    blobs: BTreeMap<String, Vec<u8>>,
    /// How long every flush takes (the disk's fsync time).
    flush_latency: Duration,
    /// Added to every flush, to model a slow disk.
    flush_delay: Duration,
    /// When set, flushes fail (a failing disk).
    fail_flushes: bool,
    /// Flushes that failed since the power was last turned on.
    flush_failures: u64,
}

/// One record on a [`SimDisk`]: a key of a tree, or a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredRecord {
    Tree(Tree, Vec<u8>),
    Blob(String),
}

/// A cheaply cloneable handle; clones share the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
}

fn apply(trees: &mut Trees, tree: Tree, writes: &[Write]) {
    let map = trees.entry(tree).or_default();
    for write in writes {
        match write {
            Write::Put(k, v) => {
                map.insert(k.clone(), v.clone());
            }
            Write::Delete(k) => {
                map.remove(k);
            }
        }
    }
}

fn no_power() -> io::Error {
    io::Error::other("simulated power loss")
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock must not hide the original failure.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Simulates a power loss: everything not flushed is gone.
    pub fn crash(&self) {
        self.power_off();
        self.power_on(0);
    }

    /// The power goes: from now until [`SimDisk::power_on`], writes and flushes fail, and a
    /// flush under way completes nothing.
    pub fn power_off(&self) {
        let mut inner = self.lock();
        inner.off = true;
        inner.power_losses += 1;
    }

    /// The power is back. The disk kept what was flushed and the first `kept` unflushed
    /// batches (a torn flush): writes reach the platter in order, and batches given to
    /// [`Disk::write`] are atomic, so what survives is a prefix of whole batches. Returns how
    /// many batches were lost.
    pub fn power_on(&self, kept: usize) -> usize {
        let mut inner = self.lock();
        inner.off = false;
        inner.flush_failures = 0;
        let pending = std::mem::take(&mut inner.unflushed);
        let lost = pending.len().saturating_sub(kept);
        for (tree, writes) in pending.into_iter().take(kept) {
            apply(&mut inner.durable, tree, &writes);
        }
        inner.current = inner.durable.clone();
        inner.settled = inner.written;
        lost
    }

    pub fn set_flush_delay(&self, delay: Duration) {
        self.lock().flush_delay = delay;
    }

    pub fn set_flush_latency(&self, latency: Duration) {
        self.lock().flush_latency = latency;
    }

    pub fn set_fail_flushes(&self, fail: bool) {
        self.lock().fail_flushes = fail;
    }

    /// Whether flushes fail now.
    pub fn failing(&self) -> bool {
        self.lock().fail_flushes
    }

    /// How many flushes failed since the power was last turned on (a node's start, in the
    /// simulation: every crash turns it off and on).
    pub fn flush_failures(&self) -> u64 {
        self.lock().flush_failures
    }

    /// One flush's wait, then whether it fails (counted).
    async fn flush_wait(&self) -> io::Result<()> {
        let delay = {
            let inner = self.lock();
            inner.flush_latency + inner.flush_delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.lock();
        if inner.off {
            return Err(no_power());
        }
        if inner.fail_flushes {
            inner.flush_failures += 1;
            return Err(io::Error::other("simulated disk failure"));
        }
        Ok(())
    }

    /// Every stored record, durable or not, with its length in bytes: what bit rot can hit.
    pub fn records(&self) -> Vec<(StoredRecord, usize)> {
        let inner = self.lock();
        let mut records = Vec::new();
        for (tree, map) in &inner.current {
            for (key, value) in map {
                records.push((StoredRecord::Tree(*tree, key.clone()), value.len()));
            }
        }
        for (name, data) in &inner.blobs {
            records.push((StoredRecord::Blob(name.clone()), data.len()));
        }
        records
    }

    /// Bit rot: flips bit `bit` (counted from the record's first byte) of `record`, in what
    /// reads see and in what survives a crash alike.
    pub fn flip_bit(&self, record: &StoredRecord, bit: usize) {
        let mut inner = self.lock();
        let flip = |bytes: &mut Vec<u8>| {
            if let Some(byte) = bytes.get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
            }
        };
        match record {
            StoredRecord::Tree(tree, key) => {
                let Inner {
                    current, durable, ..
                } = &mut *inner;
                for trees in [current, durable] {
                    if let Some(value) = trees.get_mut(tree).and_then(|m| m.get_mut(key)) {
                        flip(value);
                    }
                }
            }
            StoredRecord::Blob(name) => {
                if let Some(data) = inner.blobs.get_mut(name) {
                    flip(data);
                }
            }
        }
    }

    /// Writes not yet durable (for tests of the durability contract).
    pub fn unflushed_writes(&self) -> usize {
        self.lock().unflushed.len()
    }
}

impl Disk for SimDisk {
    fn get(&self, tree: Tree, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self
            .lock()
            .current
            .get(&tree)
            .and_then(|m| m.get(key).cloned()))
    }

    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let inner = self.lock();
        let Some(map) = inner.current.get(&tree) else {
            return Ok(Vec::new());
        };
        let iter: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = match to {
            // An empty range (BTreeMap panics on a reversed one).
            Some(to) if to <= from => return Ok(Vec::new()),
            Some(to) => Box::new(map.range(from.to_vec()..to.to_vec())),
            None => Box::new(map.range(from.to_vec()..)),
        };
        Ok(iter.map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn last(&self, tree: Tree) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .lock()
            .current
            .get(&tree)
            .and_then(|m| m.last_key_value().map(|(k, v)| (k.clone(), v.clone()))))
    }

    fn write(&self, tree: Tree, writes: Vec<Write>) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.off {
            return Err(no_power());
        }
        apply(&mut inner.current, tree, &writes);
        inner.unflushed.push((tree, writes));
        inner.written += 1;
        Ok(())
    }

    /// Each put its own batch: a torn flush may keep any prefix of an append, as the
    /// contract allows.
    fn append(&self, tree: Tree, puts: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
        for (key, value) in puts {
            self.write(tree, vec![Write::Put(key, value)])?;
        }
        Ok(())
    }

    fn delete_first(&self, tree: Tree, to: &[u8], limit: usize) -> io::Result<usize> {
        let keys: Vec<Vec<u8>> = {
            let inner = self.lock();
            let Some(map) = inner.current.get(&tree) else {
                return Ok(0);
            };
            map.range(..to.to_vec())
                .map(|(k, _)| k.clone())
                .take(limit)
                .collect()
        };
        let deleted = keys.len();
        if deleted > 0 {
            self.write(tree, keys.into_iter().map(Write::Delete).collect())?;
        }
        Ok(deleted)
    }

    fn write_blob(&self, name: &str, data: Vec<u8>) -> BoxFuture<'static, io::Result<()>> {
        let disk = self.clone();
        let name = name.to_string();
        let power_losses = self.lock().power_losses;
        Box::pin(async move {
            disk.flush_wait().await?;
            let mut inner = disk.lock();
            if inner.power_losses != power_losses {
                return Err(io::Error::other("the power went during the write"));
            }
            inner.blobs.insert(name, data);
            Ok(())
        })
    }

    fn read_blob(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.lock().blobs.get(name).cloned())
    }

    fn set_aside_blob(&self, name: &str) -> io::Result<()> {
        let mut inner = self.lock();
        if let Some(data) = inner.blobs.remove(name) {
            inner.blobs.insert(format!("{name}.corrupt"), data);
        }
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, io::Result<()>> {
        let disk = self.clone();
        // The writes this flush covers: those made before it was asked for (a write made
        // while it waits is covered by a later flush, as with a real fsync).
        let (covered, power_losses) = {
            let inner = self.lock();
            (inner.written, inner.power_losses)
        };
        Box::pin(async move {
            disk.flush_wait().await?;
            let mut inner = disk.lock();
            if inner.power_losses != power_losses {
                return Err(io::Error::other("the power went during the flush"));
            }
            let count = covered.saturating_sub(inner.settled) as usize;
            let done: Vec<_> = inner.unflushed.drain(..count).collect();
            inner.settled += done.len() as u64;
            for (tree, writes) in done {
                apply(&mut inner.durable, tree, &writes);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(disk: &SimDisk, key: &[u8]) {
        disk.write(Tree::Log, vec![Write::Put(key.to_vec(), b"v".to_vec())])
            .unwrap();
    }

    #[tokio::test]
    async fn a_torn_flush_keeps_a_prefix_of_the_unflushed_batches() {
        let disk = SimDisk::new();
        for key in [b"a", b"b", b"c"] {
            put(&disk, key);
        }
        disk.power_off();
        assert!(
            disk.write(Tree::Log, vec![Write::Delete(b"a".to_vec())])
                .is_err()
        );
        assert_eq!(disk.power_on(2), 1, "one batch of three lost");
        assert!(disk.get(Tree::Log, b"b").unwrap().is_some());
        assert_eq!(disk.get(Tree::Log, b"c").unwrap(), None);
        put(&disk, b"d");
        disk.crash();
        assert!(
            disk.get(Tree::Log, b"b").unwrap().is_some(),
            "kept batches are durable"
        );
        assert_eq!(disk.get(Tree::Log, b"d").unwrap(), None);
    }

    #[tokio::test]
    async fn a_flush_covers_only_earlier_writes_and_nothing_after_a_power_loss() {
        let disk = SimDisk::new();
        disk.set_flush_latency(Duration::from_millis(20));
        put(&disk, b"a");
        let flush = tokio::spawn(disk.flush());
        tokio::task::yield_now().await;
        put(&disk, b"b"); // after the flush started
        flush.await.unwrap().unwrap();
        disk.crash();
        assert!(disk.get(Tree::Log, b"a").unwrap().is_some());
        assert_eq!(disk.get(Tree::Log, b"b").unwrap(), None, "not covered");

        put(&disk, b"c");
        let flush = tokio::spawn(disk.flush());
        tokio::task::yield_now().await;
        disk.crash(); // the power goes while the flush waits
        put(&disk, b"d");
        assert!(flush.await.unwrap().is_err());
        disk.crash();
        assert_eq!(disk.get(Tree::Log, b"c").unwrap(), None);
        assert_eq!(disk.get(Tree::Log, b"d").unwrap(), None);
    }

    #[tokio::test]
    async fn failed_flushes_are_counted_and_make_nothing_durable() {
        let disk = SimDisk::new();
        put(&disk, b"a");
        disk.set_fail_flushes(true);
        assert!(disk.flush().await.is_err());
        assert_eq!(disk.flush_failures(), 1);
        disk.crash();
        assert_eq!(disk.flush_failures(), 0, "counted per power-on");
        assert_eq!(disk.get(Tree::Log, b"a").unwrap(), None);
    }

    #[tokio::test]
    async fn crash_loses_only_unflushed_writes() {
        let disk = SimDisk::new();
        disk.write(Tree::Meta, vec![Write::Put(b"a".to_vec(), b"1".to_vec())])
            .unwrap();
        disk.flush().await.unwrap();
        disk.write(Tree::Meta, vec![Write::Put(b"b".to_vec(), b"2".to_vec())])
            .unwrap();
        assert_eq!(
            disk.get(Tree::Meta, b"b").unwrap(),
            Some(b"2".to_vec()),
            "visible before flush"
        );
        disk.crash();
        assert_eq!(disk.get(Tree::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(disk.get(Tree::Meta, b"b").unwrap(), None);
    }
}
