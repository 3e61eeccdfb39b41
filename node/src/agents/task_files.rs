//! Serves task files to agents, by content hash, over the connection of their session.
//!
//! An agent asks for the file of a transaction it was sent: the node serves it only if that
//! transaction is the agent's run in flight (so an agent gets the files of the tasks it is
//! asked to run, nothing else), the job's task has the requested hash, and the file at the
//! planned path still has it — a file changed since the job was planned is refused, and the
//! agent, which checks the hash of whatever it receives too, runs nothing.

use super::in_flight_for;
use porch_core::{ClusterState, TaskInvocation};
use porch_lang::tasks::catalog::TASK_FILE_BYTES_MAX;
use porch_lang::tasks::sha256_hex;
use std::path::{Component, Path};
use tonic::Status;

/// The task of `transaction_id`, run by `certname`, if its file's hash is `sha256` (read under
/// the applied state's lock: no file I/O here).
pub fn task_of(
    state: &ClusterState,
    certname: &str,
    transaction_id: &str,
    sha256: &str,
) -> Result<TaskInvocation, Status> {
    let (job_id, _) = in_flight_for(state, certname)
        .into_iter()
        .find(|(_, txn)| txn == transaction_id)
        .ok_or_else(|| {
            Status::permission_denied(format!(
                "transaction {transaction_id} is not a run of {certname} in flight"
            ))
        })?;
    let task = state
        .job(job_id)
        .and_then(|job| job.spec.task.clone())
        .ok_or_else(|| Status::invalid_argument(format!("job {job_id} is not a task job")))?;
    if task.sha256 != sha256 {
        return Err(Status::invalid_argument(format!(
            "job {job_id} runs task {} with sha256 {}, not {sha256}",
            task.name, task.sha256
        )));
    }
    Ok(task)
}

/// The bytes of `task`'s file, if it still has the planned hash.
pub fn task_file(codedir: &Path, task: &TaskInvocation) -> Result<Vec<u8>, Status> {
    read_checked(codedir, &task.file_path, &task.sha256)
        .map_err(|why| Status::failed_precondition(format!("task {}: {why}", task.name)))
}

/// Reads `relative` under `codedir` (a path from the log: never outside the code dir) and
/// returns it only if its hash is still `sha256`.
fn read_checked(codedir: &Path, relative: &str, sha256: &str) -> Result<Vec<u8>, String> {
    let path = Path::new(relative);
    if path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!("refusing the task file path {relative:?}"));
    }
    let full = codedir.join(path);
    let size = std::fs::metadata(&full)
        .map_err(|e| format!("{relative}: {e}"))?
        .len();
    if size > TASK_FILE_BYTES_MAX {
        return Err(format!(
            "{relative} is {size} bytes; at most {TASK_FILE_BYTES_MAX} are served"
        ));
    }
    let content = std::fs::read(&full).map_err(|e| format!("{relative}: {e}"))?;
    let now = sha256_hex(&content);
    if now != sha256 {
        return Err(format!(
            "the task file {relative} changed since the job was planned (sha256 {sha256}, now {now}); nothing runs"
        ));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_served_only_with_the_planned_hash_and_inside_the_code_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m/tasks")).unwrap();
        std::fs::write(dir.path().join("m/tasks/t.sh"), b"echo 1").unwrap();
        let hash = sha256_hex(b"echo 1");
        assert_eq!(
            read_checked(dir.path(), "m/tasks/t.sh", &hash).unwrap(),
            b"echo 1"
        );
        std::fs::write(dir.path().join("m/tasks/t.sh"), b"echo 2").unwrap();
        let changed = read_checked(dir.path(), "m/tasks/t.sh", &hash).unwrap_err();
        assert!(
            changed.contains("changed since the job was planned"),
            "{changed}"
        );
        assert!(
            read_checked(dir.path(), "../etc/passwd", &hash)
                .unwrap_err()
                .contains("refusing")
        );
        assert!(
            read_checked(dir.path(), "/etc/passwd", &hash)
                .unwrap_err()
                .contains("refusing")
        );
        assert!(read_checked(dir.path(), "m/tasks/none", &hash).is_err());
    }
}
