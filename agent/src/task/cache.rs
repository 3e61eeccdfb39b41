//! The agent's task cache: task files by content hash (`<dir>/<sha256>/<file name>`), checked
//! against their hash every time they are used, so a file changed or damaged on disk is
//! fetched again rather than run.

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Files kept; the least recently written beyond it are removed.
pub const CACHED_FILES_MAX: usize = 64;

pub struct TaskCache {
    dir: PathBuf,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A SHA-256 as porch writes it: 64 lowercase hex digits (also what makes it safe as a
/// directory name).
pub fn valid_sha256(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// A task file name safe to create: no directory parts, not hidden.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether the simulation planted [`porch_core::planted::Bug::TaskCacheByName`] (never in a
/// build without the agent's `planted-bugs` feature).
fn planted_cache_by_name() -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        porch_core::planted::active(porch_core::planted::Bug::TaskCacheByName)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        false
    }
}

impl TaskCache {
    pub fn new(dir: PathBuf) -> TaskCache {
        TaskCache { dir }
    }

    fn path(&self, sha256: &str, file_name: &str) -> PathBuf {
        self.dir.join(sha256).join(file_name)
    }

    /// The cached file with this hash, if there is one and its content still has the hash.
    pub fn get(&self, sha256: &str, file_name: &str) -> Option<PathBuf> {
        if planted_cache_by_name()
            && let Some(path) = self.any_named(file_name)
        {
            return Some(path);
        }
        let path = self.path(sha256, file_name);
        let content = std::fs::read(&path).ok()?;
        if sha256_hex(&content) == sha256 {
            return Some(path);
        }
        tracing::warn!(
            "cached task file {} no longer has its hash; fetching it again",
            path.display()
        );
        let _ = std::fs::remove_dir_all(self.dir.join(sha256));
        None
    }

    /// The planted bug `TaskCacheByName`: the first cached file
    /// called `file_name`, whatever its hash.
    fn any_named(&self, file_name: &str) -> Option<PathBuf> {
        let mut hashes: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        hashes.sort();
        hashes
            .into_iter()
            .map(|dir| dir.join(file_name))
            .find(|path| path.is_file())
    }

    /// Stores `content` (whose hash the caller checked) as an executable only its owner may
    /// touch, and returns its path.
    pub fn put(&self, sha256: &str, file_name: &str, content: &[u8]) -> Result<PathBuf, String> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = self.dir.join(sha256);
        std::fs::create_dir_all(&dir).map_err(|e| format!("task cache {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        let path = dir.join(file_name);
        let temporary = dir.join(format!(".{file_name}.part"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o700)
                .open(&temporary)?;
            file.write_all(content)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|e| format!("task cache {}: {e}", path.display()))?;
        self.prune();
        Ok(path)
    }

    /// Keeps the newest [`CACHED_FILES_MAX`] entries.
    fn prune(&self) {
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(valid_sha256))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= CACHED_FILES_MAX {
            return;
        }
        entries.sort();
        let surplus = entries.len() - CACHED_FILES_MAX;
        for (_, path) in entries.into_iter().take(surplus) {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_is_used_only_while_it_has_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TaskCache::new(dir.path().join("cache"));
        let hash = sha256_hex(b"#!/bin/sh\necho hi\n");
        assert!(cache.get(&hash, "hi.sh").is_none());
        let path = cache.put(&hash, "hi.sh", b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(cache.get(&hash, "hi.sh"), Some(path.clone()));
        std::fs::write(&path, b"#!/bin/sh\nrm -rf /\n").unwrap();
        assert!(
            cache.get(&hash, "hi.sh").is_none(),
            "a tampered file was served"
        );
        assert!(!path.is_file(), "the tampered entry stays");
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TaskCache::new(dir.path().to_path_buf());
        for i in 0..CACHED_FILES_MAX + 5 {
            let content = format!("#!/bin/sh\necho {i}\n");
            cache
                .put(&sha256_hex(content.as_bytes()), "t.sh", content.as_bytes())
                .unwrap();
        }
        let kept = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(kept, CACHED_FILES_MAX);
    }

    #[test]
    fn names_and_hashes_from_the_wire_are_checked() {
        assert!(valid_sha256(&"a".repeat(64)));
        assert!(!valid_sha256(&"A".repeat(64)));
        assert!(!valid_sha256("../etc"));
        assert!(valid_file_name("status.sh"));
        assert!(!valid_file_name("../x"));
        assert!(!valid_file_name("a/b"));
        assert!(!valid_file_name(".hidden"));
    }
}
