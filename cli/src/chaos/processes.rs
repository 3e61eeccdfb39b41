//! The processes a chaos run starts (nodes, agents), each optionally inside a network
//! namespace. A process is always left running normally or killed: dropping one continues it
//! if it was paused and kills it, and every child gets SIGKILL when this process dies (the
//! parent-death signal), so even a kill -9 of `porch chaos` leaves no node running.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use tokio::process::{Child, Command};

pub struct Process {
    pub name: String,
    program: PathBuf,
    args: Vec<OsString>,
    /// `/run/netns/<name>`: the namespace the process is started in.
    netns: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Process {
    pub fn new(
        name: String,
        program: PathBuf,
        args: Vec<OsString>,
        netns: Option<String>,
        log: PathBuf,
    ) -> Process {
        Process {
            name,
            program,
            args,
            netns: netns.map(|ns| PathBuf::from("/run/netns").join(ns)),
            log,
            child: None,
            paused: false,
        }
    }

    pub fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let netns = match &self.netns {
            Some(path) => Some(
                std::fs::File::open(path)
                    .map_err(|e| format!("{}: network namespace: {e}", path.display()))?,
            ),
            None => None,
        };
        let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true);
        crate::child_process::dies_with_parent(&mut command, libc::SIGKILL);
        // SAFETY: between fork and exec the closure makes one system call and neither
        // allocates nor locks, which is what `pre_exec` requires.
        unsafe {
            command.pre_exec(move || {
                if let Some(fd) = netns_fd
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.name))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, signal: libc::c_int) -> Result<(), String> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| format!("{} is not running", self.name))?;
        // SAFETY: kill with a pid of our own child and a valid signal number.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(format!(
                "{}: signal {signal}: {}",
                self.name,
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&mut self) -> Result<(), String> {
        self.signal(libc::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    pub fn resume(&mut self) -> Result<(), String> {
        if self.paused {
            self.signal(libc::SIGCONT)?;
            self.paused = false;
        }
        Ok(())
    }

    /// kill -9, returning once the process is gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.paused = false;
    }

    /// The exit status if the process ended on its own since it was started.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.resume();
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
