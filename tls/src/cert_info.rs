//! Facts read from a certificate or CRL for messages and identities. webpki verifies; this
//! only reads, so it never decides whether something is trusted.

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// What porch reports about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertFacts {
    /// Subject common name: the certname of a Puppet certificate.
    pub common_name: Option<String>,
    /// Serial as uppercase hex, as Puppet's CA lists it.
    pub serial_hex: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Reads a DER certificate; the error says why it is not one (no input bytes are quoted).
pub(crate) fn cert_facts(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertFacts {
        common_name,
        serial_hex: serial_hex(cert.raw_serial()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// The issuer name of a DER CRL.
pub(crate) fn crl_issuer(der: &[u8]) -> Result<String, String> {
    let (_, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| format!("not a valid CRL ({e})"))?;
    Ok(crl.issuer().to_string())
}

/// The serials (as [`serial_hex`]) a DER CRL revokes.
pub(crate) fn revoked_serials(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| format!("not a valid CRL ({e})"))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|revoked| serial_hex(revoked.raw_serial()))
        .collect())
}

/// Uppercase hex without separators, leading zero bytes dropped (but at least one byte).
pub(crate) fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[start..].iter().map(|b| format!("{b:02X}")).collect()
}

/// A date as people read it in logs: `2026-11-29 14:03:00 UTC`.
pub(crate) fn format_date(date: OffsetDateTime) -> String {
    let utc = date.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_print_as_puppet_lists_them() {
        assert_eq!(serial_hex(&[0x00, 0x0a]), "0A");
        assert_eq!(serial_hex(&[0x01, 0xff]), "01FF");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let why = cert_facts(b"hello").unwrap_err();
        assert!(why.starts_with("not a valid X.509 certificate"), "{why}");
    }
}
