use std::fmt;
use std::path::PathBuf;

/// Which input a file is, named after porch's flags so an error points at what to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    Cert,
    Key,
    CaCert,
    Crl,
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileRole::Cert => "--cert",
            FileRole::Key => "--key",
            FileRole::CaCert => "--cacert",
            FileRole::Crl => "--crl",
        })
    }
}

/// Everything that can go wrong loading TLS material. Messages name the file and the problem
/// and never quote key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{role} {}: {problem}", path.display())]
    File {
        role: FileRole,
        path: PathBuf,
        problem: String,
    },
    #[error(
        "--key {}: private key does not match the certificate --cert {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// rustls refused to build a configuration from material that passed our checks.
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("dev CA {}: {problem}", path.display())]
    DevCa { path: PathBuf, problem: String },
}

impl TlsError {
    pub(crate) fn file(role: FileRole, path: &std::path::Path, problem: impl Into<String>) -> Self {
        TlsError::File {
            role,
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn dev_ca(path: &std::path::Path, problem: impl Into<String>) -> Self {
        TlsError::DevCa {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}
