//! [`Disk`] on sled 0.34: one database, one sled tree per [`Tree`].
//!
//! sled buffers writes in memory and its background flusher would fsync every 500 ms by
//! default. Acknowledging a raft append on that schedule loses acknowledged writes on power
//! loss, so the background flusher is turned off and durability points are explicit:
//! [`Disk::flush`] asks the store's flush thread ([`crate::flush_thread`]) to call sled's
//! `flush`, which writes and syncs sled's single log covering every tree.

use crate::disk::{Disk, Tree, Write};
use crate::flush_thread::{FlushDone, FlushThread};
use futures::future::BoxFuture;
use std::io;
use std::path::Path;

pub struct SledDisk {
    /// Where blobs (snapshots) live, beside the sled files.
    blob_dir: std::path::PathBuf,
    db: sled::Db,
    /// Every fsync happens here (see [`crate::flush_thread`]).
    flusher: FlushThread,
    flush_metrics: std::sync::Arc<crate::storage_metrics::FlushMetrics>,
    log: sled::Tree,
    meta: sled::Tree,
}

impl SledDisk {
    /// Opens (or creates) the store under `dir`. Errors name the directory and what went wrong.
    pub fn open(dir: &Path) -> io::Result<SledDisk> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| sled_error(dir, e))?;
        let open_tree = |tree: Tree| db.open_tree(tree.name()).map_err(|e| sled_error(dir, e));
        let blob_dir = dir.join("blobs");
        std::fs::create_dir_all(&blob_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", blob_dir.display())))?;
        remove_unfinished_blob_writes(&blob_dir);
        let flushed_db = db.clone();
        let flush_metrics = std::sync::Arc::new(crate::storage_metrics::FlushMetrics::default());
        let timed = flush_metrics.clone();
        let flusher = FlushThread::start("sled-flush", move |requests| {
            let started = std::time::Instant::now();
            let flushed = flushed_db.flush().map(|_| ()).map_err(io_error);
            timed.flush.observe(started.elapsed());
            timed
                .requests
                .fetch_add(requests as u64, std::sync::atomic::Ordering::Relaxed);
            flushed
        })
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start the flush thread: {e}")))?;
        Ok(SledDisk {
            blob_dir,
            flusher,
            flush_metrics,
            log: open_tree(Tree::Log)?,
            meta: open_tree(Tree::Meta)?,
            db,
        })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        match tree {
            Tree::Log => &self.log,
            Tree::Meta => &self.meta,
        }
    }
}

/// Temporary files of blob writes a crash interrupted: never renamed into place, so nothing
/// refers to them. Failing to remove one only costs disk space, so errors are ignored.
fn remove_unfinished_blob_writes(blob_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(blob_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn sled_error(dir: &Path, error: sled::Error) -> io::Error {
    match error {
        sled::Error::Io(e) => io::Error::new(e.kind(), format!("{}: {e}", dir.display())),
        sled::Error::Corruption { .. } => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: the sled store is corrupt ({error})", dir.display()),
        ),
        other => io::Error::other(format!("{}: {other}", dir.display())),
    }
}

fn io_error(error: sled::Error) -> io::Error {
    match error {
        sled::Error::Io(e) => e,
        sled::Error::Corruption { .. } => {
            io::Error::new(io::ErrorKind::InvalidData, error.to_string())
        }
        other => io::Error::other(other.to_string()),
    }
}

impl Disk for SledDisk {
    fn get(&self, tree: Tree, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(io_error)?
            .map(|v| v.to_vec()))
    }

    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tree = self.tree(tree);
        let iter = match to {
            // An empty range (sled, like BTreeMap, refuses a reversed one).
            Some(to) if to <= from => return Ok(Vec::new()),
            Some(to) => tree.range(from..to),
            None => tree.range(from..),
        };
        iter.map(|item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(io_error)
        })
        .collect()
    }

    fn last(&self, tree: Tree) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .tree(tree)
            .last()
            .map_err(io_error)?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn write(&self, tree: Tree, mut writes: Vec<Write>) -> io::Result<()> {
        // A single write is atomic on its own. A sled batch costs far more than its writes:
        // it seals sled's write buffer twice, and each sealed buffer is written and synced by
        // sled's thread pool (measured: ~7 extra thread wake-ups and two extra syncs per raft
        // append).
        if writes.len() == 1 {
            let tree = self.tree(tree);
            return match writes.pop() {
                Some(Write::Put(key, value)) => tree.insert(key, value).map(|_| ()),
                Some(Write::Delete(key)) => tree.remove(key).map(|_| ()),
                None => Ok(()),
            }
            .map_err(io_error);
        }
        let mut batch = sled::Batch::default();
        for write in writes {
            match write {
                Write::Put(key, value) => batch.insert(key, value),
                Write::Delete(key) => batch.remove(key),
            }
        }
        self.tree(tree).apply_batch(batch).map_err(io_error)
    }

    fn delete_first(&self, tree: Tree, to: &[u8], limit: usize) -> io::Result<usize> {
        let tree = self.tree(tree);
        let mut deleted = 0;
        for key in tree.range(..to).keys().take(limit) {
            tree.remove(key.map_err(io_error)?).map_err(io_error)?;
            deleted += 1;
        }
        Ok(deleted)
    }

    fn append(&self, tree: Tree, puts: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
        // sled's log is recovered as a prefix (by log sequence number), so inserts made one
        // by one survive a crash as a prefix of them: all `append` promises.
        let tree = self.tree(tree);
        for (key, value) in puts {
            tree.insert(key, value).map_err(io_error)?;
        }
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, io::Result<()>> {
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.flush_then(Box::new(move |result| {
            let _ = done.send(result);
        }));
        Box::pin(async move {
            flushed
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the store's flush thread is gone")))
        })
    }

    fn flush_then(&self, done: FlushDone) {
        self.flusher.request(done);
    }

    fn flush_metrics(&self) -> Option<std::sync::Arc<crate::storage_metrics::FlushMetrics>> {
        Some(self.flush_metrics.clone())
    }

    fn write_blob(&self, name: &str, data: Vec<u8>) -> BoxFuture<'static, io::Result<()>> {
        let path = self.blob_dir.join(name);
        // A temporary file of its own per write: two writers sharing one had the second's
        // rename fail with "No such file or directory".
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write_no = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = self.blob_dir.join(format!(".{name}.{write_no}.tmp"));
        let dir = self.blob_dir.clone();
        Box::pin(async move {
            let write = move || -> io::Result<()> {
                use std::io::Write as _;
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(&data)?;
                file.sync_all()?;
                std::fs::rename(&temp, &path)?;
                std::fs::File::open(&dir)?.sync_all()
            };
            crate::background::run(write).await?
        })
    }

    fn read_blob(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.blob_dir.join(name)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_aside_blob(&self, name: &str) -> io::Result<()> {
        let path = self.blob_dir.join(name);
        let aside = self.blob_dir.join(format!("{name}.corrupt"));
        std::fs::rename(&path, &aside)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        std::fs::File::open(&self.blob_dir)?.sync_all()
    }

    fn size_on_disk(&self) -> u64 {
        let blobs: u64 = std::fs::read_dir(&self.blob_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.metadata().ok())
                    .map(|meta| meta.len())
                    .sum()
            })
            .unwrap_or(0);
        self.db.size_on_disk().unwrap_or(0) + blobs
    }
}
