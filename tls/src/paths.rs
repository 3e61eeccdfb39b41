use std::path::{Path, PathBuf};

/// Where a node's or agent's TLS material lives. Usually Puppet's ssldir layout
/// ([`TlsPaths::from_ssldir`]); each file can also be given on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// This host's certificate (PEM), optionally followed by intermediates.
    pub cert: PathBuf,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates to trust (PEM); nothing else is trusted.
    pub cacert: PathBuf,
    /// The CA's revocation list (PEM). None turns revocation checks off.
    pub crl: Option<PathBuf>,
}

impl TlsPaths {
    /// Puppet's layout: `certs/<certname>.pem`, `private_keys/<certname>.pem`, `certs/ca.pem`
    /// and `crl.pem`. The CRL is used when the file exists (a Puppet agent always has one).
    pub fn from_ssldir(ssldir: &Path, certname: &str) -> TlsPaths {
        let crl = ssldir.join("crl.pem");
        TlsPaths {
            cert: ssldir.join("certs").join(format!("{certname}.pem")),
            key: ssldir.join("private_keys").join(format!("{certname}.pem")),
            cacert: ssldir.join("certs").join("ca.pem"),
            crl: crl.exists().then_some(crl),
        }
    }

    /// These paths with each file given on its own (flags such as `--cert`) in place of its.
    pub fn with_overrides(
        mut self,
        cert: Option<&Path>,
        key: Option<&Path>,
        cacert: Option<&Path>,
        crl: Option<&Path>,
    ) -> TlsPaths {
        if let Some(cert) = cert {
            self.cert = cert.to_path_buf();
        }
        if let Some(key) = key {
            self.key = key.to_path_buf();
        }
        if let Some(cacert) = cacert {
            self.cacert = cacert.to_path_buf();
        }
        if let Some(crl) = crl {
            self.crl = Some(crl.to_path_buf());
        }
        self
    }
}

/// Puppet's default ssldir for the current user: `/etc/puppetlabs/puppet/ssl` for root,
/// `~/.puppetlabs/etc/puppet/ssl` otherwise (as `puppet config print ssldir` says).
pub fn default_ssldir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    default_ssldir_for(
        is_root,
        std::env::var_os("HOME").map(PathBuf::from).as_deref(),
    )
}

fn default_ssldir_for(is_root: bool, home: Option<&Path>) -> PathBuf {
    match (is_root, home) {
        (false, Some(home)) => home.join(".puppetlabs/etc/puppet/ssl"),
        _ => PathBuf::from("/etc/puppetlabs/puppet/ssl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssldir_layout_is_puppets() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::from_ssldir(dir.path(), "web1.example.com");
        assert_eq!(paths.cert, dir.path().join("certs/web1.example.com.pem"));
        assert_eq!(
            paths.key,
            dir.path().join("private_keys/web1.example.com.pem")
        );
        assert_eq!(paths.cacert, dir.path().join("certs/ca.pem"));
        assert_eq!(paths.crl, None, "no crl.pem on disk: no CRL");
        std::fs::write(dir.path().join("crl.pem"), "").unwrap();
        let paths = TlsPaths::from_ssldir(dir.path(), "web1.example.com");
        assert_eq!(paths.crl, Some(dir.path().join("crl.pem")));
    }

    #[test]
    fn default_ssldir_is_system_wide_for_root_only() {
        let home = Path::new("/home/ops");
        assert_eq!(
            default_ssldir_for(true, Some(home)),
            Path::new("/etc/puppetlabs/puppet/ssl")
        );
        assert_eq!(
            default_ssldir_for(false, Some(home)),
            Path::new("/home/ops/.puppetlabs/etc/puppet/ssl")
        );
    }
}
