//! Child processes that must not outlive the porch process that started them.

/// Makes the process `command` starts receive `signal` when the thread that started it ends,
/// which for porch's runtime and main threads is when porch ends: a `porch dev` or `porch
/// chaos` killed with SIGKILL then leaves no node behind holding its port and data.
pub fn dies_with_parent(command: &mut tokio::process::Command, signal: libc::c_int) {
    // SAFETY: between fork and exec the closure makes one system call and neither allocates
    // nor locks, which is what `pre_exec` requires.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
