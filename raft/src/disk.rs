//! The storage seam: a few ordered key-value trees with an explicit durability point.
//!
//! Both the raft log store and the snapshot store are written once, against [`Disk`]. In
//! production the disk is sled ([`crate::sled_disk::SledDisk`]); in the simulation it is
//! [`crate::sim_disk::SimDisk`], which keeps sled's semantics that matter for correctness:
//! writes are visible at once, durable only after [`Disk::flush`], and a crash loses whatever
//! was not flushed. So the simulation exercises the very code that runs in production.

use futures::future::BoxFuture;
use std::io;

/// The trees porch keeps. Keys within a tree are ordered bytewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    /// Raft log entries, keyed by index as 8 bytes big-endian (so key order = log order).
    Log,
    /// Vote, committed log id, last purged log id, node identity.
    Meta,
}

impl Tree {
    pub const ALL: [Tree; 2] = [Tree::Log, Tree::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Tree::Log => "log",
            Tree::Meta => "meta",
        }
    }
}

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// An ordered key-value store with explicit durability.
///
/// Contract (what the raft adapters rely on):
/// - a write is visible to every read as soon as [`Disk::write`] returns;
/// - a batch given to [`Disk::write`] is atomic: after a crash either all of it or none of it
///   is there;
/// - writes are durable only once a later [`Disk::flush`] has completed, and a flush makes
///   every earlier write durable (across all trees);
/// - writes become durable in the order they were made (no later write survives a crash that
///   an earlier one did not).
pub trait Disk: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> io::Result<Option<Vec<u8>>>;

    /// Entries with `from <= key < to` (`to = None`: to the end), in key order.
    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// The entry with the greatest key, if any.
    fn last(&self, tree: Tree) -> io::Result<Option<(Vec<u8>, Vec<u8>)>>;

    /// Applies `writes` atomically.
    fn write(&self, tree: Tree, writes: Vec<Write>) -> io::Result<()>;

    /// Stores `puts` in order, visible at once; after a crash, what survives of them is a
    /// prefix (in order, possibly empty) unless a flush covered them all. Weaker than
    /// [`Disk::write`] and cheaper: the raft log's appends need no more, since an append is
    /// acknowledged only after a flush and a log that lost a tail is still a valid log.
    fn append(&self, tree: Tree, puts: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
        self.write(
            tree,
            puts.into_iter().map(|(k, v)| Write::Put(k, v)).collect(),
        )
    }

    /// Deletes the first keys of `tree` below `to`, at most `limit` of them, and returns how
    /// many it deleted. Each deletion is atomic on its own; none is durable before a flush.
    fn delete_first(&self, tree: Tree, to: &[u8], limit: usize) -> io::Result<usize>;

    /// Makes every earlier write durable. Returns only once it is.
    fn flush(&self) -> BoxFuture<'static, io::Result<()>>;

    /// Makes every earlier write durable and then calls `done`, without the caller waiting:
    /// the raft log acknowledges appends this way, so replication to followers overlaps the
    /// leader's own fsync. `done` may run on any thread and must be quick.
    fn flush_then(&self, done: crate::flush_thread::FlushDone) {
        let flush = self.flush();
        tokio::spawn(async move { done(flush.await) });
    }

    /// Stores a large value whole (a snapshot), outside the trees, so writing it never delays
    /// the log's flushes. Durable, and atomic (old or new value after a crash), on return.
    fn write_blob(&self, name: &str, data: Vec<u8>) -> BoxFuture<'static, io::Result<()>>;

    fn read_blob(&self, name: &str) -> io::Result<Option<Vec<u8>>>;

    /// Moves blob `name` out of the way (kept as `<name>.corrupt` for its operator to look
    /// at): it failed its checksum. Durable on return.
    fn set_aside_blob(&self, name: &str) -> io::Result<()>;

    /// Bytes the store occupies on disk, snapshot included (0 if unknown), for `cluster
    /// status`.
    fn size_on_disk(&self) -> u64 {
        0
    }

    /// Timings of this disk's flushes, for the metrics endpoint (`None`: not measured).
    fn flush_metrics(&self) -> Option<std::sync::Arc<crate::storage_metrics::FlushMetrics>> {
        None
    }
}

/// The key of log index `index`.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index a log key encodes, or an error naming the bad key (a corrupt store).
pub fn log_index(key: &[u8]) -> io::Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| corrupt(format!("log key of {} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// An `InvalidData` error: the store holds something porch did not write.
pub fn corrupt(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}
