//! Exit statuses of the client commands (PE documents none; these are porch's).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (a followed job finished with every node finished) |
//! | 1 | the job finished but some node failed, errored or was skipped |
//! | 2 | usage error, bad configuration (unreadable CA file, conf), or the request was rejected as invalid (HTTP 400) |
//! | 3 | the job was stopped |
//! | 4 | the job failed (job-level: no node could run) |
//! | 5 | no orchestrator could be reached |
//! | 6 | other API error (unknown job, unknown environment, server error) |
//! | 7 | not authenticated (HTTP 401: no token, invalid, expired or revoked token, failed login) |
//! | 8 | permission denied (HTTP 403) |
//! | 9 | TLS or certificate problem (server certificate not trusted, expired, wrong name) |
//! | 130 | interrupted before a job id was known |

pub const SUCCESS: u8 = 0;
pub const NODE_FAILURES: u8 = 1;
pub const USAGE: u8 = 2;
pub const STOPPED: u8 = 3;
pub const JOB_FAILED: u8 = 4;
pub const UNREACHABLE: u8 = 5;
pub const API_ERROR: u8 = 6;
pub const NOT_AUTHENTICATED: u8 = 7;
pub const PERMISSION_DENIED: u8 = 8;
pub const TLS: u8 = 9;
pub const INTERRUPTED: u8 = 130;

/// Prints a usage or configuration error and returns [`USAGE`].
pub fn usage(message: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("error: {message}");
    std::process::ExitCode::from(USAGE)
}

/// The one-line summary for `--help` texts.
pub const SUMMARY: &str = "Exit codes: 0 success, 1 node failures, 2 usage, configuration or invalid request, \
3 job stopped, 4 job failed, 5 orchestrator unreachable, 6 other API error, 7 not authenticated, \
8 permission denied, 9 TLS/certificate problem, 130 interrupted.";
