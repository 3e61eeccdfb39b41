//! [`Disk`] in memory, for the simulation: visible at once, durable only when flushed, and a
//! crash throws away what was not flushed — the failure model of sled with the background
//! flusher off. The disk outlives the simulated node that uses it, as a real disk would.

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
    /// Writes made since the last flush, in order.
    unflushed: Vec<(Tree, Vec<Write>)>,
    /// Blobs are durable as soon as written (as with write + fsync + rename).
    blobs: BTreeMap<String, Vec<u8>>,
    /// Added to every flush, to model a slow disk.
    flush_delay: Duration,
    /// When set, flushes fail (a failing disk).
    fail_flushes: bool,
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
        let mut inner = self.lock();
        inner.unflushed.clear();
        inner.current = inner.durable.clone();
    }

    pub fn set_flush_delay(&self, delay: Duration) {
        self.lock().flush_delay = delay;
    }

    pub fn set_fail_flushes(&self, fail: bool) {
        self.lock().fail_flushes = fail;
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
        apply(&mut inner.current, tree, &writes);
        inner.unflushed.push((tree, writes));
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
        Box::pin(async move {
            let delay = disk.lock().flush_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut inner = disk.lock();
            if inner.fail_flushes {
                return Err(io::Error::other("simulated disk failure"));
            }
            inner.blobs.insert(name, data);
            Ok(())
        })
    }

    fn read_blob(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.lock().blobs.get(name).cloned())
    }

    fn flush(&self) -> BoxFuture<'static, io::Result<()>> {
        let disk = self.clone();
        Box::pin(async move {
            let delay = disk.lock().flush_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut inner = disk.lock();
            if inner.fail_flushes {
                return Err(io::Error::other("simulated disk failure"));
            }
            // Only writes made before this flush started are guaranteed; making later ones
            // durable too is allowed (sled does the same), and simpler.
            let pending = std::mem::take(&mut inner.unflushed);
            for (tree, writes) in pending {
                apply(&mut inner.durable, tree, &writes);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
