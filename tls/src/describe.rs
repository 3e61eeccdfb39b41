//! Turns rustls errors into sentences. hyper, reqwest, tonic and tokio wrap a TLS failure in
//! layers of `io::Error`; without this a CLI would print "connection refused" or "broken
//! pipe" for what is really "the server's certificate is not signed by your CA".

use std::error::Error as StdError;

use rustls::{AlertDescription, CertRevocationListError, CertificateError, Error};
use rustls_pki_types::UnixTime;

use crate::cert_info::format_date;

/// Whose certificate the error is about, which decides the words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsSide {
    /// We are the client: the certificate is the server's.
    Client,
    /// We are the server: the certificate is the client's.
    Server,
    /// Our own certificate, checked at load.
    Own,
}

/// Finds a rustls error in `error`'s source chain and says what it means for a client (CLI,
/// agent, raft peer), or None when the failure is not about TLS.
///
/// When the chain holds no rustls error but one of its errors says "received fatal alert:
/// Name", that alert is described: with TLS 1.3 a server checks our certificate after our
/// side of the handshake is done, so its refusal arrives on h2's first read, and h2 keeps
/// only the text of the error.
pub fn describe_tls_error(error: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(tls) = find_rustls_error(error) {
        return Some(describe_rustls_error(tls, TlsSide::Client));
    }
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(alert) = alert_in_text(&current.to_string()) {
            return Some(describe_alert(alert, TlsSide::Client));
        }
        next = current.source();
    }
    None
}

/// The alert named in rustls's words for `Error::AlertReceived` ("received fatal alert:
/// CertificateRevoked"), if `text` holds them.
fn alert_in_text(text: &str) -> Option<AlertDescription> {
    let name = text.split("received fatal alert: ").nth(1)?;
    let name: String = name
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '(' || *c == ')')
        .collect();
    (0..=u8::MAX)
        .map(AlertDescription::from)
        .find(|alert| format!("{alert:?}") == name)
}

/// The first rustls error in the chain. `io::Error::source` skips the error it wraps, so each
/// `io::Error` is opened with `get_ref` as well.
pub(crate) fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a Error> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<Error>() {
            return Some(tls);
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(tls) = find_rustls_error(inner) {
                return Some(tls);
            }
        }
        next = current.source();
    }
    None
}

fn date(time: UnixTime) -> String {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .map(format_date)
        .unwrap_or_else(|| "an unrepresentable date".into())
}

/// One sentence for a rustls error, from the point of view of `side`.
pub(crate) fn describe_rustls_error(error: &Error, side: TlsSide) -> String {
    let whose = match side {
        TlsSide::Client => "the server's certificate",
        TlsSide::Server => "the client's certificate",
        TlsSide::Own => "our certificate",
    };
    let trusted_ca = match side {
        TlsSide::Client => "the CA you trust (--cacert)",
        _ => "the CA this node trusts (--cacert)",
    };
    match error {
        Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!("{whose} is not signed by {trusted_ca}"),
            CertificateError::Expired => format!("{whose} has expired"),
            CertificateError::ExpiredContext { not_after, .. } => {
                format!("{whose} expired on {}", date(*not_after))
            }
            CertificateError::NotValidYet => format!("{whose} is not valid yet (check the clocks)"),
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "{whose} is not valid before {} (check the clocks)",
                date(*not_before)
            ),
            CertificateError::Revoked => format!("{whose} is revoked (listed in the CRL)"),
            CertificateError::NotValidForName => format!("{whose} is not issued for this name"),
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => {
                let names: Vec<&str> = presented.iter().map(|name| presented_name(name)).collect();
                let names = if names.is_empty() {
                    "no name at all".into()
                } else {
                    names.join(", ")
                };
                format!("{whose} is for {names}, not {}", expected.to_str())
            }
            CertificateError::UnknownRevocationStatus => {
                format!("no CRL covers {whose} (is --crl from another CA?)")
            }
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => {
                "the CRL (--crl) is past its next-update date".into()
            }
            // webpki finds the CA by name, then checks the signature: a CA regenerated under
            // the same name (common with Puppet CAs) fails here, not as an unknown issuer.
            CertificateError::BadSignature => format!(
                "{whose} is not signed by {trusted_ca}: its issuer has the CA's name but \
                 another key (was the CA regenerated?)"
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!("{whose} is not issued for this use (extended key usage)")
            }
            other => format!("{whose} is invalid ({other:?})"),
        },
        Error::InvalidCertRevocationList(CertRevocationListError::BadSignature) => {
            "the CRL (--crl) is not signed by the CA (--cacert)".into()
        }
        Error::InvalidCertRevocationList(other) => {
            format!("the CRL (--crl) is unusable ({other:?})")
        }
        Error::NoCertificatesPresented => match side {
            TlsSide::Server => "the client presented no certificate".into(),
            _ => "the server presented no certificate".into(),
        },
        Error::AlertReceived(alert) => describe_alert(*alert, side),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => match side {
            TlsSide::Server => "the client did not speak TLS (plain HTTP to a TLS port?)".into(),
            _ => {
                "the server did not answer with TLS (is it serving plain HTTP? use http://)".into()
            }
        },
        Error::PeerIncompatible(why) => format!("no TLS version or cipher in common ({why:?})"),
        other => format!("TLS error: {other}"),
    }
}

/// webpki lists names as `DnsName("web1")` or `IpAddress(10.0.0.1)`; people read `web1`.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(name)
}

fn describe_alert(alert: AlertDescription, side: TlsSide) -> String {
    let peer = match side {
        TlsSide::Server => "the client",
        _ => "the server",
    };
    match alert {
        AlertDescription::CertificateRevoked => {
            format!("{peer} refused our certificate: it is revoked")
        }
        AlertDescription::CertificateExpired => {
            format!("{peer} refused our certificate: it has expired")
        }
        AlertDescription::UnknownCA => {
            format!("{peer} refused our certificate: it is not signed by a CA {peer} trusts")
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown => {
            format!("{peer} refused our certificate ({alert:?})")
        }
        AlertDescription::CertificateRequired => {
            format!("{peer} requires a client certificate (--cert and --key)")
        }
        AlertDescription::HandshakeFailure | AlertDescription::ProtocolVersion => {
            format!("{peer} found no TLS version or cipher in common ({alert:?})")
        }
        AlertDescription::DecryptError => format!(
            "{peer} refused our certificate: its signature does not match the CA {peer} \
             trusts (a CA of the same name but another key?)"
        ),
        AlertDescription::NoApplicationProtocol => format!("{peer} speaks neither h2 nor http/1.1"),
        other => format!("{peer} ended the TLS handshake ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_rustls_error_inside_io_errors() {
        let tls = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let outer = std::io::Error::other(io);
        assert_eq!(
            describe_tls_error(&outer).as_deref(),
            Some("the server's certificate is not signed by the CA you trust (--cacert)")
        );
    }

    #[test]
    fn non_tls_errors_are_not_described() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_tls_error(&refused), None);
    }

    #[test]
    fn name_mismatch_names_both_names() {
        let error = Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: rustls_pki_types::ServerName::try_from("node2")
                .unwrap()
                .to_owned(),
            presented: vec!["DnsName(\"node1\")".into()],
        });
        assert_eq!(
            describe_rustls_error(&error, TlsSide::Client),
            "the server's certificate is for node1, not node2"
        );
    }

    #[test]
    fn an_alert_known_only_by_its_text_is_still_described() {
        // h2 keeps only the text of the error that ended the connection.
        let flattened =
            std::io::Error::other("connection error: received fatal alert: CertificateRevoked");
        let outer = std::io::Error::new(std::io::ErrorKind::BrokenPipe, flattened);
        assert_eq!(
            describe_tls_error(&outer).as_deref(),
            Some("the server refused our certificate: it is revoked")
        );
        let unknown_ca = std::io::Error::other("received fatal alert: UnknownCA; closing");
        assert_eq!(
            describe_tls_error(&unknown_ca).as_deref(),
            Some("the server refused our certificate: it is not signed by a CA the server trusts")
        );
        let not_an_alert = std::io::Error::other("received fatal alert: NoSuchAlertName");
        assert_eq!(describe_tls_error(&not_an_alert), None);
    }

    #[test]
    fn revoked_alert_says_our_certificate_is_revoked() {
        let error = Error::AlertReceived(AlertDescription::CertificateRevoked);
        assert_eq!(
            describe_rustls_error(&error, TlsSide::Client),
            "the server refused our certificate: it is revoked"
        );
    }
}
