//! Bad material is refused at load, with the file and the problem named.

use porch_tls::dev_ca::Validity;
use porch_tls::{TlsIdentity, TlsPaths};

use crate::common::{NODE, Pki};

fn load_error(paths: TlsPaths) -> String {
    TlsIdentity::load(paths).unwrap_err().to_string()
}

#[test]
fn missing_certificate_file_is_named() {
    let pki = Pki::new();
    let mut paths = pki.issue(NODE, Validity::default());
    paths.cert = pki.dir.path().join("nowhere.pem");
    let error = load_error(paths.clone());
    assert!(
        error.starts_with(&format!("--cert {}: cannot read: ", paths.cert.display())),
        "{error}"
    );
}

#[test]
fn garbage_certificate_says_no_certificate_found() {
    let pki = Pki::new();
    let paths = pki.issue(NODE, Validity::default());
    std::fs::write(&paths.cert, "hello, I am not a certificate\n").unwrap();
    assert_eq!(
        load_error(paths.clone()),
        format!(
            "--cert {}: no certificate found (expected a PEM \"CERTIFICATE\" block)",
            paths.cert.display()
        )
    );
}

#[test]
fn garbage_key_says_no_private_key_found() {
    let pki = Pki::new();
    let paths = pki.issue(NODE, Validity::default());
    std::fs::write(&paths.key, "nothing here").unwrap();
    let error = load_error(paths.clone());
    assert!(
        error.starts_with(&format!(
            "--key {}: no private key found",
            paths.key.display()
        )),
        "{error}"
    );
}

#[test]
fn key_of_another_certificate_does_not_match() {
    let pki = Pki::new();
    let paths = pki.issue(NODE, Validity::default());
    let other = pki.issue("other.porch.test", Validity::default());
    let key_pem = std::fs::read_to_string(&other.key).unwrap();
    let mut mixed = paths.clone();
    mixed.key = other.key.clone();
    let error = load_error(mixed);
    assert_eq!(
        error,
        format!(
            "--key {}: private key does not match the certificate --cert {}",
            other.key.display(),
            paths.cert.display()
        )
    );
    let key_body = key_pem.lines().nth(1).unwrap();
    assert!(!error.contains(key_body), "the error quotes key material");
}

#[test]
fn certificate_from_another_ca_is_not_signed_by_the_cacert() {
    let pki = Pki::new();
    let mut paths = pki.issue_by_other_ca("stranger.porch.test");
    paths.cacert = pki.ca.cacert_path();
    paths.crl = None;
    let error = load_error(paths.clone());
    assert!(
        error.starts_with(&format!(
            "--cert {}: not signed by the CA in --cacert {} (issuer: CN=Porch dev CA: ",
            paths.cert.display(),
            paths.cacert.display()
        )),
        "{error}"
    );
}

#[test]
fn expired_own_certificate_says_when_it_expired() {
    let pki = Pki::new();
    let paths = pki.issue(NODE, Validity::expired());
    let error = load_error(paths.clone());
    assert!(
        error.starts_with(&format!(
            "--cert {}: certificate '{NODE}' expired on ",
            paths.cert.display()
        )),
        "{error}"
    );
}

#[test]
fn crl_of_another_ca_is_refused() {
    let pki = Pki::new();
    let mut paths = pki.issue(NODE, Validity::default());
    let other_crl = pki.other_ca.crl_path();
    paths.crl = Some(other_crl.clone());
    let error = load_error(paths);
    assert!(
        error.starts_with(&format!(
            "--crl {}: not a CRL of the CA in --cacert",
            other_crl.display()
        )),
        "{error}"
    );
}

#[test]
fn own_revoked_certificate_is_refused() {
    let pki = Pki::new();
    let paths = pki.issue(NODE, Validity::default());
    pki.ca.revoke(NODE).unwrap();
    let error = load_error(paths.clone());
    assert!(
        error.starts_with(&format!(
            "--cert {}: certificate is revoked",
            paths.cert.display()
        )),
        "{error}"
    );
}

#[test]
fn ssldir_layout_from_the_dev_ca_loads() {
    let pki = Pki::new();
    let ssldir = pki.dir.path().join("ssl");
    pki.ca
        .issue(&ssldir, NODE, &[], Validity::default())
        .unwrap();
    let identity = TlsIdentity::load(TlsPaths::from_ssldir(&ssldir, NODE)).unwrap();
    assert_eq!(identity.certname(), NODE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ssldir.join(format!("private_keys/{NODE}.pem")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "private key mode {mode:o}");
}
