//! Where the spool keeps its records: files in production ([`FileSpoolStore`]), a simulated
//! disk in the simulation — so an agent's machine losing power between a spool write and its
//! fsync, a torn write or a flipped bit runs through the very spool code that runs in
//! production.
//!
//! Each record carries a CRC-32 of its JSON (`<8 hex digits>\n<json>`): a damaged record is
//! detected when the spool is opened, and its transaction is reported as errored — never run
//! again, never read as a different result.

use std::io;
use std::path::{Path, PathBuf};

/// One record per transaction, named by its transaction id.
///
/// Contract: [`SpoolStore::write`] replaces a record as a whole and is visible at once; it is
/// durable only once a later [`SpoolStore::sync`] has returned. A crash (of the machine) may
/// lose writes not yet synced, and on a disk that tears writes leave one damaged.
pub trait SpoolStore: Send + Sync + 'static {
    /// Every record, `(transaction id, bytes)`, in name order.
    fn list(&self) -> io::Result<Vec<(String, Vec<u8>)>>;
    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes every earlier write and removal durable.
    fn sync(&self) -> io::Result<()>;
}

/// The spool directory: `<transaction id>.json` per record, written to a temporary file,
/// fsynced and renamed (so a record is never torn), made durable by an fsync of the
/// directory.
pub struct FileSpoolStore {
    dir: PathBuf,
}

impl FileSpoolStore {
    /// Opens `dir` (created if missing), refusing one this process cannot write.
    pub fn open(dir: &Path) -> Result<FileSpoolStore, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--spool-dir {}: cannot create: {e}", dir.display()))?;
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"ok")
            .map_err(|e| format!("--spool-dir {}: not writable: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(FileSpoolStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }
}

impl SpoolStore for FileSpoolStore {
    fn list(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut records = Vec::new();
        for item in std::fs::read_dir(&self.dir)?.flatten() {
            let path = item.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            records.push((name.to_string(), std::fs::read(&path)?));
        }
        records.sort();
        Ok(records)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write as _;
        let path = self.path(name);
        let temp = self.dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn sync(&self) -> io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// A record's bytes: its checksum, then its JSON.
pub fn seal(json: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:08x}\n", crc32fast::hash(json)).into_bytes();
    bytes.extend_from_slice(json);
    bytes
}

/// The JSON of a record [`seal`] wrote, or why it cannot be trusted. A record that starts
/// with `{` was written before records carried checksums, and is read as it is.
pub fn unseal(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.first() == Some(&b'{') {
        return Ok(bytes);
    }
    let (head, json) = bytes
        .split_at_checked(9)
        .ok_or_else(|| format!("{} bytes: shorter than its checksum", bytes.len()))?;
    // Lower-case digits only, as `seal` writes them: a flipped case bit must not parse.
    let lower_hex = head[..8]
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let stored = std::str::from_utf8(&head[..8])
        .ok()
        .filter(|_| lower_hex && head[8] == b'\n')
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("no checksum line")?;
    let computed = crc32fast::hash(json);
    if stored != computed {
        return Err(format!(
            "checksum {stored:08x} stored, {computed:08x} computed over {} bytes",
            json.len()
        ));
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flipped_bit_and_every_truncation_of_a_record_is_detected() {
        let sealed = seal(br#"{"transaction_id":"t1","result":null}"#);
        assert!(unseal(&sealed).is_ok());
        for bit in 0..sealed.len() * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                unseal(&damaged).is_err(),
                "bit {bit} flipped went unnoticed"
            );
        }
        for len in 0..sealed.len() {
            assert!(
                unseal(&sealed[..len]).is_err(),
                "cut at {len} went unnoticed"
            );
        }
    }
}
