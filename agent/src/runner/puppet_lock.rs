//! Puppet's two agent lock files, read the way Puppet reads them.
//!
//! - `agent_disabled_lockfile` exists while `puppet agent --disable "reason"` is in force; it
//!   holds `{"disabled_message":"reason"}`. A run is refused at once, with the reason: waiting
//!   would hold the job for as long as someone left the agent disabled.
//! - `agent_catalog_run_lockfile` holds the pid of the run applying a catalog (the daemon's
//!   scheduled run, or someone's `puppet agent -t`). Like pxp-agent's puppet module, the runner
//!   waits for that run to finish — bounded by `--puppet-lock-wait-secs` — and then starts its
//!   own; a lock whose pid is gone is stale, and Puppet itself ignores it, so the runner does too.

use std::path::Path;
use std::time::Duration;

/// How often a held run lock is looked at again.
pub const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Longest disable reason kept in a message.
const DISABLED_MESSAGE_BYTES_MAX: usize = 1024;

/// The reason in a disabled lock file, if it is one; `Some("")` when disabled without reason.
pub fn disabled_reason(lockfile: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lockfile).ok().or_else(|| {
        // Present but unreadable (permissions): still disabled.
        lockfile.exists().then(String::new)
    })?;
    let reason = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|json| json["disabled_message"].as_str().map(str::to_string))
        .unwrap_or_default();
    Some(super::tail_utf8(reason.trim(), DISABLED_MESSAGE_BYTES_MAX))
}

/// The pid holding the run lock, or None when nobody does (no file, or a stale one). A lock
/// file without a readable pid counts as held by pid 0: the runner cannot prove it stale.
pub fn run_lock_holder(lockfile: &Path) -> Option<u32> {
    let text = match std::fs::read_to_string(lockfile) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(_) => return Some(0),
    };
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => process_alive(pid).then_some(pid),
        _ => Some(0),
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence; EPERM means it exists but belongs to someone else.
    // SAFETY: kill with signal 0 sends nothing.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Waits until no live run holds `lockfile`, for at most `wait`. Returns the holder's pid if
/// it still holds the lock then.
pub async fn wait_for_run_lock(lockfile: &Path, wait: Duration) -> Option<u32> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let holder = run_lock_holder(lockfile)?;
        if tokio::time::Instant::now() >= deadline {
            return Some(holder);
        }
        tokio::time::sleep(LOCK_POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_reason_is_read_from_puppets_json() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("agent_disabled.lock");
        assert_eq!(disabled_reason(&lock), None);
        std::fs::write(&lock, r#"{"disabled_message":"kernel upgrade, ask ops"}"#).unwrap();
        assert_eq!(
            disabled_reason(&lock).as_deref(),
            Some("kernel upgrade, ask ops")
        );
        std::fs::write(&lock, "garbage").unwrap();
        assert_eq!(disabled_reason(&lock).as_deref(), Some(""));
    }

    #[test]
    fn a_run_lock_of_a_dead_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("agent_catalog_run.lock");
        assert_eq!(run_lock_holder(&lock), None);
        std::fs::write(&lock, std::process::id().to_string()).unwrap();
        assert_eq!(run_lock_holder(&lock), Some(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(&lock, dead.to_string()).unwrap();
        assert_eq!(run_lock_holder(&lock), None);
        std::fs::write(&lock, "not a pid").unwrap();
        assert_eq!(run_lock_holder(&lock), Some(0));
    }

    #[tokio::test]
    async fn waiting_ends_when_the_lock_goes_or_the_wait_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("agent_catalog_run.lock");
        std::fs::write(&lock, std::process::id().to_string()).unwrap();
        let held = wait_for_run_lock(&lock, Duration::from_millis(250)).await;
        assert_eq!(held, Some(std::process::id()));
        let remover = {
            let lock = lock.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                std::fs::remove_file(lock).unwrap();
            })
        };
        assert_eq!(
            wait_for_run_lock(&lock, Duration::from_secs(10)).await,
            None
        );
        remover.await.unwrap();
    }
}
