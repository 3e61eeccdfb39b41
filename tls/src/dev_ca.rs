//! A throwaway certificate authority for `porch dev` and multi-process tests. It writes what
//! Puppet's CA would: a Puppet ssldir per host (`certs/<certname>.pem`,
//! `private_keys/<certname>.pem`, `certs/ca.pem`, `crl.pem`), and on revocation rewrites
//! `crl.pem` in every ssldir it issued into, so a running node picks it up at its next reload.
//! Never for production: the CA key sits unencrypted in its directory.
//!
//! The CA directory holds `ca_crt.pem`, `ca_key.pem`, `ca_crl.pem`, `serial` (the next serial),
//! `inventory.txt` (`<serial> <certname> <ssldir>` per issued certificate) and `revoked.txt`
//! (`<serial> <unix seconds>` per revocation).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::cert_info::{format_date, serial_hex};
use crate::error::TlsError;
use crate::paths::TlsPaths;

const CA_CERT_FILE: &str = "ca_crt.pem";
const CA_KEY_FILE: &str = "ca_key.pem";
const CA_CRL_FILE: &str = "ca_crl.pem";
const SERIAL_FILE: &str = "serial";
const INVENTORY_FILE: &str = "inventory.txt";
const REVOKED_FILE: &str = "revoked.txt";

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a day ago (clocks differ) to `years` from now.
    pub fn years_from_now(years: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(365 * years),
        }
    }

    /// Expired yesterday, for tests of refusals.
    pub fn expired() -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }
}

impl Default for Validity {
    /// Five years, like Puppet's CA (`ca_ttl`).
    fn default() -> Validity {
        Validity::years_from_now(5)
    }
}

/// A CA on disk. Each [`DevCa::create`] makes an independent CA (the "wrong CA" of tests).
pub struct DevCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl DevCa {
    /// Makes a new CA in `dir` (created if missing); refuses a directory that has one.
    pub fn create(dir: &Path) -> Result<DevCa, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        if cert_path.exists() {
            return Err(TlsError::dev_ca(
                dir,
                "already holds a CA (open it instead)",
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| TlsError::dev_ca(dir, format!("cannot create: {e}")))?;
        let key = KeyPair::generate().map_err(|e| TlsError::dev_ca(dir, e.to_string()))?;
        let mut params = CertificateParams::default();
        let now = OffsetDateTime::now_utc();
        let date = format_date(now);
        let day = date.split(' ').next().unwrap_or_default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        // The key's id in the name: two dev CAs made the same day must not share a name, or
        // a certificate of one would look like a forgery to the other, not a stranger.
        let key_id = serial_hex(&params.key_identifier(&key));
        let key_id = key_id.get(..8).unwrap_or(&key_id).to_string();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Porch dev CA: {} {day} {key_id}", hostname()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365 * 15);
        params.serial_number = Some(SerialNumber::from(1u64));
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::dev_ca(dir, e.to_string()))?;
        write_atomically(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes(), true)?;
        write_atomically(&cert_path, cert.pem().as_bytes(), false)?;
        write_atomically(&dir.join(SERIAL_FILE), b"2\n", false)?;
        let ca = DevCa {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        };
        ca.write_crl()?;
        Ok(ca)
    }

    /// Opens the CA that [`DevCa::create`] made in `dir`.
    pub fn open(dir: &Path) -> Result<DevCa, TlsError> {
        let cert_pem = read_text(&dir.join(CA_CERT_FILE))?;
        let key_pem = read_text(&dir.join(CA_KEY_FILE))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| TlsError::dev_ca(&dir.join(CA_KEY_FILE), format!("not a key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| {
            TlsError::dev_ca(
                &dir.join(CA_CERT_FILE),
                format!("not a CA certificate: {e}"),
            )
        })?;
        Ok(DevCa {
            dir: dir.to_path_buf(),
            issuer,
            cert_pem,
        })
    }

    /// Opens the CA in `dir`, creating it on first use (`porch dev`).
    pub fn open_or_create(dir: &Path) -> Result<DevCa, TlsError> {
        if dir.join(CA_CERT_FILE).exists() {
            DevCa::open(dir)
        } else {
            DevCa::create(dir)
        }
    }

    /// The CA certificate, to trust (`--cacert`).
    pub fn cacert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The CA's current revocation list (`--crl`).
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CA_CRL_FILE)
    }

    /// Issues a certificate for `certname` into Puppet's layout under `ssldir` and returns its
    /// paths. `alt_names` (DNS names or IP addresses) are added to the certname, which is
    /// always a DNS alt name: peers verify a node against its certname.
    pub fn issue(
        &self,
        ssldir: &Path,
        certname: &str,
        alt_names: &[&str],
        validity: Validity,
    ) -> Result<TlsPaths, TlsError> {
        let key = KeyPair::generate().map_err(|e| TlsError::dev_ca(&self.dir, e.to_string()))?;
        let serial = self.next_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, certname);
        let mut names = vec![certname];
        names.extend(alt_names.iter().filter(|name| **name != certname));
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.try_into().map_err(|_| {
                    TlsError::dev_ca(&self.dir, format!("'{name}' is not a valid DNS name"))
                })?),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| TlsError::dev_ca(&self.dir, e.to_string()))?;

        let certs = ssldir.join("certs");
        let private_keys = ssldir.join("private_keys");
        for dir in [&certs, &private_keys] {
            std::fs::create_dir_all(dir)
                .map_err(|e| TlsError::dev_ca(dir, format!("cannot create: {e}")))?;
        }
        let file = format!("{certname}.pem");
        write_atomically(
            &private_keys.join(&file),
            key.serialize_pem().as_bytes(),
            true,
        )?;
        write_atomically(&certs.join(&file), cert.pem().as_bytes(), false)?;
        write_atomically(&certs.join("ca.pem"), self.cert_pem.as_bytes(), false)?;
        let crl = read_text(&self.crl_path())?;
        write_atomically(&ssldir.join("crl.pem"), crl.as_bytes(), false)?;
        let line = format!(
            "{} {certname} {}\n",
            serial_hex(&serial.to_be_bytes()),
            ssldir.display()
        );
        append(&self.dir.join(INVENTORY_FILE), &line)?;
        Ok(TlsPaths::from_ssldir(ssldir, certname))
    }

    /// Revokes every certificate issued for `certname_or_serial` (a certname, or a serial in
    /// hex as Puppet lists it) and rewrites `crl.pem` in every ssldir issued into. Returns
    /// the files rewritten, the CA's own CRL first.
    pub fn revoke(&self, certname_or_serial: &str) -> Result<Vec<PathBuf>, TlsError> {
        let inventory = self.inventory()?;
        let wanted = certname_or_serial
            .trim_start_matches("0x")
            .to_ascii_uppercase();
        let serials: Vec<&str> = inventory
            .iter()
            .filter(|(serial, certname, _)| *certname == certname_or_serial || *serial == wanted)
            .map(|(serial, _, _)| serial.as_str())
            .collect();
        if serials.is_empty() {
            return Err(TlsError::dev_ca(
                &self.dir,
                format!("no certificate issued for '{certname_or_serial}'"),
            ));
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let revoked = read_optional(&self.dir.join(REVOKED_FILE))?;
        for serial in serials {
            if !revoked
                .lines()
                .any(|line| line.split(' ').next() == Some(serial))
            {
                append(&self.dir.join(REVOKED_FILE), &format!("{serial} {now}\n"))?;
            }
        }
        self.write_crl()?;
        let crl = read_text(&self.crl_path())?;
        let mut written = vec![self.crl_path()];
        for (_, _, ssldir) in &inventory {
            let path = Path::new(ssldir).join("crl.pem");
            if !written.contains(&path) && Path::new(ssldir).is_dir() {
                write_atomically(&path, crl.as_bytes(), false)?;
                written.push(path);
            }
        }
        Ok(written)
    }

    /// `(serial hex, certname, ssldir)` of every certificate issued.
    fn inventory(&self) -> Result<Vec<(String, String, String)>, TlsError> {
        let text = read_optional(&self.dir.join(INVENTORY_FILE))?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, ' ');
                Some((
                    fields.next()?.to_string(),
                    fields.next()?.to_string(),
                    fields.next()?.to_string(),
                ))
            })
            .collect())
    }

    fn next_serial(&self) -> Result<u64, TlsError> {
        let path = self.dir.join(SERIAL_FILE);
        let serial: u64 = read_text(&path)?
            .trim()
            .parse()
            .map_err(|_| TlsError::dev_ca(&path, "not a number"))?;
        write_atomically(&path, format!("{}\n", serial + 1).as_bytes(), false)?;
        Ok(serial)
    }

    fn write_crl(&self) -> Result<(), TlsError> {
        let revoked_path = self.dir.join(REVOKED_FILE);
        let revoked = read_optional(&revoked_path)?;
        let mut revoked_certs = Vec::new();
        for line in revoked.lines() {
            let mut fields = line.split(' ');
            let (Some(serial), Some(when)) = (fields.next(), fields.next()) else {
                continue;
            };
            let bad = || TlsError::dev_ca(&revoked_path, format!("bad line '{line}'"));
            let serial = u64::from_str_radix(serial, 16).map_err(|_| bad())?;
            let when = when.parse::<i64>().map_err(|_| bad())?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: OffsetDateTime::from_unix_timestamp(when).map_err(|_| bad())?,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(365 * 5),
            crl_number: SerialNumber::from(revoked_certs.len() as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .and_then(|crl| crl.pem())
            .map_err(|e| TlsError::dev_ca(&self.dir, format!("cannot sign the CRL: {e}")))?;
        write_atomically(&self.crl_path(), crl.as_bytes(), false)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| TlsError::dev_ca(path, format!("cannot read: {e}")))
}

fn read_optional(path: &Path) -> Result<String, TlsError> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other.map_err(|e| TlsError::dev_ca(path, format!("cannot read: {e}"))),
    }
}

fn append(path: &Path, line: &str) -> Result<(), TlsError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(|e| TlsError::dev_ca(path, format!("cannot write: {e}")))
}

/// Writes a sibling file and renames it over `path`, so a reloading node never reads half a
/// file. Private keys are created 0600.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|e| TlsError::dev_ca(path, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_by_serial_rewrites_every_ssldir_and_unknown_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::create(&dir.path().join("ca")).unwrap();
        let web = ca
            .issue(&dir.path().join("web"), "web1", &[], Validity::default())
            .unwrap();
        ca.issue(&dir.path().join("db"), "db1", &[], Validity::default())
            .unwrap();
        let serial = crate::cert_info::cert_facts(
            &rustls_pki_types::CertificateDer::from_pem_file(&web.cert).unwrap(),
        )
        .unwrap()
        .serial_hex;
        use rustls_pki_types::pem::PemObject;
        let written = ca.revoke(&serial).unwrap();
        assert_eq!(
            written,
            vec![
                ca.crl_path(),
                dir.path().join("web/crl.pem"),
                dir.path().join("db/crl.pem")
            ]
        );
        let error = ca.revoke("nobody").unwrap_err().to_string();
        assert!(
            error.ends_with("no certificate issued for 'nobody'"),
            "{error}"
        );
        assert!(
            DevCa::create(&dir.path().join("ca")).is_err(),
            "a CA was overwritten"
        );
        let reopened = DevCa::open(&dir.path().join("ca")).unwrap();
        let paths = reopened
            .issue(&dir.path().join("app"), "app1", &[], Validity::default())
            .unwrap();
        let identity = crate::TlsIdentity::load(paths).unwrap();
        assert_eq!(
            identity.certname(),
            "app1",
            "a reopened CA issues loadable certificates"
        );
    }
}
