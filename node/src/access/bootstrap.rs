//! The first admin. The node that initialises a cluster draws a password, writes it to
//! `<data-dir>/admin-credential` (mode 0600, never logged), and commits the built-in roles and
//! an `admin` user with that password's hash. Until that commit is applied it keeps trying,
//! also after a restart (the file is still there), so a crash in between loses nothing.

use crate::access::credentials::{hash_password, new_user_id, random_password};
use crate::consensus::Consensus;
use porch_core::Command;
use porch_core::access::{ADMIN, NewUser};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN_CREDENTIAL_FILE: &str = "admin-credential";
pub const ADMIN_LOGIN: &str = "admin";

pub fn credential_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_CREDENTIAL_FILE)
}

/// Draws the first admin's password and writes it, readable by this user only.
pub fn write_admin_credential(data_dir: &Path) -> Result<String, String> {
    let password = random_password()?;
    let path = credential_path(data_dir);
    let text = format!(
        "# porch: the first admin's credential, written when this cluster was initialised.\n\
         # Log in with it (porch access login --username admin, then paste the password),\n\
         # create your own admin user, then delete this file (README: \"Access control\").\n\
         login: {ADMIN_LOGIN}\npassword: {password}\n"
    );
    if path.exists() {
        return Err(format!(
            "{}: exists already (from an earlier cluster in this data dir?)",
            path.display()
        ));
    }
    // Written aside and renamed, so a reader never sees half a file.
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&partial)
        .map_err(|e| format!("{}: cannot create: {e}", partial.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    Ok(password)
}

/// The password in a credential file (the `password:` line, or the first line when the file
/// holds nothing else: `--password-file` accepts both).
pub fn read_password_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let from_line = text
        .lines()
        .find_map(|line| line.strip_prefix("password:").map(|p| p.trim().to_string()));
    let password =
        from_line.unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string());
    if password.is_empty() {
        return Err(format!("{}: no password in the file", path.display()));
    }
    Ok(password)
}

/// Commits the built-in roles and the first admin, retrying until the state has users.
pub async fn run(consensus: Arc<Consensus>, password: String) {
    let hash = match crate::blocking::off_the_runtime(move || hash_password(&password)).await {
        Ok(Ok(hash)) => hash,
        Ok(Err(e)) => {
            tracing::error!("cannot set up the first admin: {e}");
            return;
        }
        Err(e) => {
            tracing::error!("cannot set up the first admin: {e}");
            return;
        }
    };
    let admin = NewUser {
        id: new_user_id(),
        login: ADMIN_LOGIN.into(),
        display_name: "Administrator".into(),
        password_hash: hash,
        roles: vec![ADMIN.into()],
    };
    loop {
        if consensus.view.read().cluster.access().is_bootstrapped() {
            return;
        }
        let command = Command::BootstrapAccess {
            admin: admin.clone(),
        };
        match consensus.write(None, command).await {
            Ok(_) => {
                tracing::info!("access control set up: user '{ADMIN_LOGIN}' with the admin role")
            }
            Err(e) => tracing::debug!("cannot set up access control yet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
