//! Reads the four files of a [`TlsPaths`] and checks them against each other, so that a bad
//! file is reported at start (or at reload) with its name, not at the first handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use time::OffsetDateTime;

use crate::cert_info::{cert_facts, crl_issuer, format_date};
use crate::describe::{TlsSide, describe_rustls_error};
use crate::error::{FileRole, TlsError};
use crate::paths::TlsPaths;

/// Largest file accepted as a certificate, key, CA bundle or CRL. A Puppet CRL grows with
/// every revocation (~40 bytes each); 64 MiB is far beyond any real CA and stops a wrong path
/// (a disk image, /dev/zero) from being read into memory.
pub(crate) const TLS_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The exact bytes of each file, to tell whether anything changed since the last load.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct FileContents {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub cacert: Vec<u8>,
    pub crl: Option<Vec<u8>>,
}

/// Validated material: the certificate chains to the CA, is valid now, is not revoked, and
/// the key matches it.
pub(crate) struct Material {
    pub certname: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Arc<RootCertStore>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub contents: FileContents,
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn read_file(role: FileRole, path: &Path) -> Result<Vec<u8>, TlsError> {
    let size = std::fs::metadata(path)
        .map_err(|e| TlsError::file(role, path, format!("cannot read: {e}")))?
        .len();
    if size > TLS_FILE_BYTES_MAX {
        return Err(TlsError::file(
            role,
            path,
            format!("{size} bytes: larger than the {TLS_FILE_BYTES_MAX}-byte limit for TLS files"),
        ));
    }
    std::fs::read(path).map_err(|e| TlsError::file(role, path, format!("cannot read: {e}")))
}

/// Reads every file of `paths` (what the reloader compares between polls).
pub(crate) fn read_contents(paths: &TlsPaths) -> Result<FileContents, TlsError> {
    Ok(FileContents {
        cert: read_file(FileRole::Cert, &paths.cert)?,
        key: read_file(FileRole::Key, &paths.key)?,
        cacert: read_file(FileRole::CaCert, &paths.cacert)?,
        crl: match &paths.crl {
            Some(crl) => Some(read_file(FileRole::Crl, crl)?),
            None => None,
        },
    })
}

fn pem_problem(error: pem::Error, what: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("no {what} found"),
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a PEM block holds invalid base64".into(),
        _ => "not valid PEM".into(),
    }
}

/// All PEM blocks of one type; other block types are skipped, as OpenSSL does.
pub(crate) fn parse_certs(
    role: FileRole,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(role, path, pem_problem(e, "certificate")))?;
    if certs.is_empty() {
        return Err(TlsError::file(
            role,
            path,
            "no certificate found (expected a PEM \"CERTIFICATE\" block)",
        ));
    }
    for cert in &certs {
        cert_facts(cert).map_err(|why| TlsError::file(role, path, why))?;
    }
    Ok(certs)
}

pub(crate) fn parse_crls(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(FileRole::Crl, path, pem_problem(e, "CRL")))?;
    if crls.is_empty() {
        return Err(TlsError::file(
            FileRole::Crl,
            path,
            "no CRL found (expected a PEM \"X509 CRL\" block)",
        ));
    }
    Ok(crls)
}

fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        let problem = match e {
            pem::Error::NoItemsFound => "no private key found (expected a PEM \"PRIVATE KEY\", \
                \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block; encrypted keys are not supported)"
                .to_string(),
            other => pem_problem(other, "private key"),
        };
        TlsError::file(FileRole::Key, path, problem)
    })
}

/// A root store of every certificate in `--cacert` (a Puppet bundle may hold a root and an
/// intermediate), plus their subjects for messages.
pub(crate) fn root_store(
    path: &Path,
    bytes: &[u8],
) -> Result<(Arc<RootCertStore>, Vec<String>), TlsError> {
    let certs = parse_certs(FileRole::CaCert, path, bytes)?;
    let mut roots = RootCertStore::empty();
    let mut subjects = Vec::new();
    for cert in certs {
        subjects.push(cert_facts(&cert).map(|f| f.subject).unwrap_or_default());
        roots.add(cert).map_err(|e| {
            TlsError::file(FileRole::CaCert, path, format!("not usable as a CA: {e}"))
        })?;
    }
    Ok((Arc::new(roots), subjects))
}

/// Loads and cross-checks everything; `contents` are the files' bytes read just before.
pub(crate) fn load(paths: &TlsPaths, contents: FileContents) -> Result<Material, TlsError> {
    let (cert_pem, key_pem, ca_pem) = (&contents.cert, &contents.key, &contents.cacert);
    let chain = parse_certs(FileRole::Cert, &paths.cert, cert_pem)?;
    let own =
        cert_facts(&chain[0]).map_err(|why| TlsError::file(FileRole::Cert, &paths.cert, why))?;
    let certname = own.common_name.clone().ok_or_else(|| {
        TlsError::file(
            FileRole::Cert,
            &paths.cert,
            "the certificate has no subject common name (certname)",
        )
    })?;
    let key = parse_key(&paths.key, key_pem)?;
    let provider = provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| {
            TlsError::file(
                FileRole::Key,
                &paths.key,
                "not a usable private key (unsupported type or corrupt)",
            )
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(TlsError::KeyMismatch {
            key: paths.key.clone(),
            cert: paths.cert.clone(),
        });
    }
    let (roots, ca_subjects) = root_store(&paths.cacert, ca_pem)?;
    let crls = match (&paths.crl, &contents.crl) {
        (Some(path), Some(bytes)) => {
            let crls = parse_crls(path, bytes)?;
            for crl in &crls {
                let issuer =
                    crl_issuer(crl).map_err(|why| TlsError::file(FileRole::Crl, path, why))?;
                if !ca_subjects.contains(&issuer) {
                    return Err(TlsError::file(
                        FileRole::Crl,
                        path,
                        format!(
                            "not a CRL of the CA in --cacert {} (CRL issuer: {issuer}; CA: {})",
                            paths.cacert.display(),
                            ca_subjects.join(", ")
                        ),
                    ));
                }
            }
            crls
        }
        _ => Vec::new(),
    };
    let now = OffsetDateTime::now_utc();
    if now > own.not_after {
        return Err(TlsError::file(
            FileRole::Cert,
            &paths.cert,
            format!(
                "certificate '{certname}' expired on {}",
                format_date(own.not_after)
            ),
        ));
    }
    if now < own.not_before {
        return Err(TlsError::file(
            FileRole::Cert,
            &paths.cert,
            format!(
                "certificate '{certname}' is not valid before {} (check the clock)",
                format_date(own.not_before)
            ),
        ));
    }
    self_check(paths, &chain, &roots, &crls, &own.issuer)?;
    Ok(Material {
        certname,
        chain,
        key,
        roots,
        crls,
        contents,
    })
}

/// Verifies our own certificate as a peer would: it must chain to the CA and not be revoked,
/// and a bad CRL signature shows up here too.
fn self_check(
    paths: &TlsPaths,
    chain: &[CertificateDer<'static>],
    roots: &Arc<RootCertStore>,
    crls: &[CertificateRevocationListDer<'static>],
    issuer: &str,
) -> Result<(), TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .with_crls(crls.iter().cloned())
        .build()
        .map_err(|e| {
            TlsError::file(
                FileRole::CaCert,
                &paths.cacert,
                format!("not usable as a CA: {e}"),
            )
        })?;
    let Err(error) = verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()) else {
        return Ok(());
    };
    use rustls::{CertRevocationListError as CrlError, CertificateError as CertError, Error};
    let crl_path = paths.crl.as_deref().unwrap_or(Path::new("(none)"));
    Err(match error {
        Error::InvalidCertificate(CertError::UnknownIssuer) => TlsError::file(
            FileRole::Cert,
            &paths.cert,
            format!(
                "not signed by the CA in --cacert {} (issuer: {issuer})",
                paths.cacert.display()
            ),
        ),
        Error::InvalidCertificate(CertError::BadSignature) => TlsError::file(
            FileRole::Cert,
            &paths.cert,
            format!(
                "not signed by the CA in --cacert {}: its issuer ({issuer}) has the CA's name but another key \
             (was the CA regenerated?)",
                paths.cacert.display()
            ),
        ),
        Error::InvalidCertificate(CertError::Revoked) => TlsError::file(
            FileRole::Cert,
            &paths.cert,
            format!("certificate is revoked by --crl {}", crl_path.display()),
        ),
        Error::InvalidCertificate(CertError::UnknownRevocationStatus) => TlsError::file(
            FileRole::Crl,
            crl_path,
            "no CRL in this file is from the CA that issued --cert",
        ),
        Error::InvalidCertRevocationList(CrlError::BadSignature) => TlsError::file(
            FileRole::Crl,
            crl_path,
            format!(
                "not a CRL signed by the CA in --cacert {}",
                paths.cacert.display()
            ),
        ),
        Error::InvalidCertRevocationList(other) => {
            TlsError::file(FileRole::Crl, crl_path, format!("unusable CRL: {other:?}"))
        }
        other => TlsError::file(
            FileRole::Cert,
            &paths.cert,
            format!(
                "refused by its own CA: {}",
                describe_rustls_error(&other, TlsSide::Own)
            ),
        ),
    })
}
