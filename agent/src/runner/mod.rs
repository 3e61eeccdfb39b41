//! What the agent does with a run request: run Puppet, run a command, or simulate a run.

pub mod command;
pub mod puppet;
pub mod puppet_config;
pub mod puppet_lock;
pub mod simulate;
pub mod summary;

use crate::proto::RunRequest;
use crate::spool::StoredResult;

/// Longest output kept in a result message.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;

pub enum Runner {
    Puppet(Box<puppet::PuppetRunner>),
    Command(command::CommandRunner),
    Simulate(simulate::SimulateRunner),
}

impl Runner {
    pub fn name(&self) -> &'static str {
        match self {
            Runner::Puppet(_) => "puppet",
            Runner::Command(_) => "command",
            Runner::Simulate(_) => "simulate",
        }
    }

    pub async fn run(&self, request: &RunRequest, certname: &str) -> StoredResult {
        match self {
            Runner::Puppet(r) => r.run(request).await,
            Runner::Command(r) => r.run(request, certname).await,
            Runner::Simulate(r) => r.run(request, certname).await,
        }
    }
}

/// Cuts `text` to at most `max` bytes, on a char boundary, keeping the end (the end of a log
/// says what went wrong).
pub fn tail_utf8(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Spawns `command`, retrying briefly on ETXTBSY: an executable that was just written (an
/// updated script, a freshly installed binary) can be "busy" for a moment while another
/// thread's fork still holds it open.
pub async fn spawn(
    command: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// Sends SIGKILL to the process group `leader` leads (spawned with `process_group(0)`): a run
/// that is given up on takes its children with it (Puppet's `exec`s, a hung facter).
pub fn kill_process_group(leader: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(leader)
        && pgid > 0
    {
        // SAFETY: killpg takes plain integers; a group that is already gone yields ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// Kills a process group when dropped, unless disarmed: a run future dropped mid-way (the
/// agent shutting down, a timeout) leaves nothing running.
pub struct ProcessGroupGuard {
    leader: Option<u32>,
}

impl ProcessGroupGuard {
    pub fn new(leader: Option<u32>) -> ProcessGroupGuard {
        ProcessGroupGuard { leader }
    }

    pub fn disarm(&mut self) {
        self.leader = None;
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        if let Some(leader) = self.leader {
            kill_process_group(leader);
        }
    }
}
