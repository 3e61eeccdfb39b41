//! `porch backup --out FILE` and `porch restore --from FILE --data-dir DIR ...`.
//!
//! A backup is taken by the cluster (`GET /cluster/backup`, admin: a read barrier, then the
//! applied state) and checked whole here before the file is written (temp file, fsync,
//! rename: a failed or interrupted backup never leaves a half file at FILE). A restore seeds
//! the data dir of the founding node of a new cluster (see `porch_raft::backup`); it checks
//! the file and the target before it writes anything.

use crate::client::connect;
use crate::config::GlobalArgs;
use crate::exit_code;
use clap::Args;
use porch_raft::backup::{BackupHeader, decode_backup, seed};
use porch_raft::{Disk, PeerNode, SledDisk};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The backup file to write (replaced atomically if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file (`porch backup --out`).
    #[arg(long)]
    pub from: PathBuf,
    /// The founding node's data dir: must not exist or be empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The founding node's id: the lowest id in --initial-cluster.
    #[arg(long)]
    pub id: u64,
    /// The new cluster's members (`1=host:port,2=host:port,...`), as `porch server` takes it.
    #[arg(long)]
    pub initial_cluster: String,
}

pub async fn run_backup(args: BackupArgs) -> ExitCode {
    let (_, client) = match connect(&args.global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
    let bytes = match client.get_bytes("/cluster/backup").await {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let (header, state) = match decode_backup(&bytes) {
        Ok(decoded) => decoded,
        Err(e) => {
            eprintln!("error: the cluster sent a backup that does not check out: {e}");
            return ExitCode::from(exit_code::API_ERROR);
        }
    };
    if let Err(e) = write_atomically(&args.out, &bytes) {
        eprintln!("error: {}: {e}", args.out.display());
        return ExitCode::from(exit_code::API_ERROR);
    }
    println!(
        "{}: {} at index {} (term {}), {} jobs, next job id {}, {} bytes",
        args.out.display(),
        describe_cluster(&header),
        header.applied_index,
        header.applied_term,
        state.jobs().len(),
        state.next_job_id(),
        bytes.len()
    );
    ExitCode::SUCCESS
}

pub async fn run_restore(args: RestoreArgs) -> ExitCode {
    match restore(&args).await {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code::USAGE)
        }
    }
}

async fn restore(args: &RestoreArgs) -> Result<String, String> {
    let members = porch_node::config::parse_initial_cluster(&args.initial_cluster)
        .map_err(|e| format!("--initial-cluster: {e}"))?;
    let founder = *members
        .keys()
        .next()
        .ok_or("--initial-cluster: no members")?;
    if args.id != founder {
        return Err(format!(
            "--id {}: a backup is restored into the founding node only, the lowest id in \
             --initial-cluster ({founder}); start the other members with empty data dirs and \
             they receive the state from it",
            args.id
        ));
    }
    let from = args.from.display();
    let bytes = std::fs::read(&args.from).map_err(|e| format!("--from {from}: {e}"))?;
    let (header, state) = decode_backup(&bytes).map_err(|e| format!("--from {from}: {e}"))?;
    let data_dir = &args.data_dir;
    let created = prepare_empty_dir(data_dir)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let jobs = state.jobs().len();
    let next_job_id = state.next_job_id();
    let seeded = seed_dir(data_dir, args.id, members, &header, state.restored(now_ms)).await;
    if let Err(e) = seeded {
        // Nothing half-made is left behind: the dir is removed if this command created it,
        // else emptied again.
        let _ = std::fs::remove_dir_all(data_dir.join("sled"));
        if created {
            let _ = std::fs::remove_dir_all(data_dir);
        }
        return Err(format!("--data-dir {}: {e}", data_dir.display()));
    }
    Ok(format!(
        "restored {} at index {} into {}: {jobs} jobs, job ids continue at {next_job_id}; \
         start node {} with this --data-dir and --initial-cluster, and the other members with \
         empty data dirs",
        describe_cluster(&header),
        header.applied_index,
        data_dir.display(),
        args.id
    ))
}

/// Checks that `dir` is absent or empty, and creates it; returns whether it was created.
fn prepare_empty_dir(dir: &Path) -> Result<bool, String> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if let Some(entry) = entries.next() {
                let name = entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(format!(
                    "--data-dir {shown} is not empty (it holds {name:?}): a restore seeds a new \
                     node only, it never overwrites one; give an empty or new directory"
                ));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("--data-dir {shown}: {e}"))?;
            Ok(true)
        }
        Err(e) => Err(format!("--data-dir {shown}: {e}")),
    }
}

async fn seed_dir(
    data_dir: &Path,
    id: u64,
    members: BTreeMap<u64, String>,
    header: &BackupHeader,
    state: porch_core::ClusterState,
) -> Result<(), String> {
    // The layout `porch server` opens (`<data dir>/sled`).
    let disk: Arc<dyn Disk> =
        Arc::new(SledDisk::open(&data_dir.join("sled")).map_err(|e| e.to_string())?);
    let members = members
        .into_iter()
        .map(|(id, addr)| (id, PeerNode::at(addr)))
        .collect();
    seed(disk.clone(), members, id, header.applied_index, state)
        .await
        .map_err(|e| e.to_string())?;
    // The data dir now belongs to this node, and holds a cluster: its first start joins
    // the restored cluster instead of initialising an empty one.
    porch_node::identity::claim(disk.as_ref(), id, &data_dir.display().to_string()).await?;
    Ok(())
}

fn describe_cluster(header: &BackupHeader) -> String {
    match &header.cluster_id {
        Some(id) => format!("cluster {id}"),
        None => "a cluster without an id yet".into(),
    }
}

/// Writes `bytes` to `path` whole or not at all: a temp file beside it, fsynced, renamed.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
