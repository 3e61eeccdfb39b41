//! What a run leaves if it cannot heal (kill -9 of `porch chaos`, a power cut): each run
//! registers itself in `$TMPDIR/porch-chaos-runs-<uid>/<tag>.json` (its pid, its directory, its
//! subnet tag) and unregisters when it ends; `porch chaos --cleanup` removes what runs that are
//! no longer alive left behind — processes started from their directory, their namespaces —
//! and namespaces named `porch-chaos-*` that no live run owns. It never touches a live run.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::network::{self, NAME_PREFIX};

#[derive(Serialize, Deserialize)]
struct Entry {
    pid: u32,
    tag: u8,
    dir: PathBuf,
}

/// One registry per user: a run of another user is none of this one's business.
fn registry_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("porch-chaos-runs-{uid}"))
}

/// A live run's registration; dropping it unregisters the run.
pub struct Registration {
    path: PathBuf,
}

/// Claims a subnet tag that no namespace, address or registered run uses, and registers this
/// run under it: the registry file is created exclusively, so two runs starting at once never
/// share a tag.
pub fn claim_tag(dir: &Path) -> Result<(u8, Registration), String> {
    let registry = registry_dir();
    std::fs::create_dir_all(&registry).map_err(|e| format!("{}: {e}", registry.display()))?;
    let mut hint = std::process::id();
    for _ in 0..250 {
        let tag = network::free_tag(hint)?;
        let path = registry.join(format!("{tag}.json"));
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                hint = u32::from(tag); // free_tag's next candidate is tag + 1
                continue;
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let registration = Registration { path: path.clone() };
        let entry = Entry {
            pid: std::process::id(),
            tag,
            dir: dir.to_path_buf(),
        };
        let text = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok((tag, registration));
    }
    Err(format!(
        "every subnet tag is registered in {} (porch chaos --cleanup?)",
        registry.display()
    ))
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The tags registered by runs still alive.
pub fn live_tags() -> Vec<u8> {
    entries()
        .into_iter()
        .filter(|(_, e)| is_chaos_process(e.pid))
        .map(|(_, e)| e.tag)
        .collect()
}

fn entries() -> Vec<(PathBuf, Entry)> {
    let Ok(dir) = std::fs::read_dir(registry_dir()) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f.path()).ok()?;
            Some((f.path(), serde_json::from_str(&text).ok()?))
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn is_chaos_process(pid: u32) -> bool {
    cmdline(pid).contains(" chaos")
}

/// Continues and kills every process whose command line names `dir`.
fn kill_processes_of(dir: &Path) -> usize {
    let needle = dir.display().to_string();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for pid in proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        if pid != std::process::id() && cmdline(pid).contains(&needle) {
            // SAFETY: plain signals to a process found by its command line.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGCONT);
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

/// Removes what dead runs left; returns one line per thing removed.
pub fn cleanup() -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let live = live_tags();
    for (path, entry) in entries() {
        if live.contains(&entry.tag) {
            done.push(format!(
                "left alone: the live run {} (pid {})",
                entry.tag, entry.pid
            ));
            continue;
        }
        let killed = kill_processes_of(&entry.dir);
        if killed > 0 {
            done.push(format!(
                "killed {killed} processes of the run in {}",
                entry.dir.display()
            ));
        }
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for ns in network::existing_namespaces() {
        let Some(rest) = ns.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let tag: Option<u8> = rest.split('-').next().and_then(|t| t.parse().ok());
        if tag.is_some_and(|t| live.contains(&t)) {
            continue;
        }
        network::delete_namespace(&ns)?;
        done.push(format!(
            "deleted network namespace {ns} (with its links and iptables rules)"
        ));
    }
    Ok(done)
}
