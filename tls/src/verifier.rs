//! A client-certificate verifier that remembers which certificate it refused, so the listener
//! can log "client certificate 'web1' (serial 0A) is revoked" instead of only "revoked".
//! rustls drops the certificate when a handshake fails; the verifier runs inside the
//! handshake's task, so it leaves the facts in a task-local slot the listener reads.

use std::cell::RefCell;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::cert_info::{CertFacts, cert_facts};

tokio::task_local! {
    /// The client certificate refused during the current task's handshake, if any.
    pub(crate) static REFUSED_CERT: RefCell<Option<CertFacts>>;
}

#[derive(Debug)]
pub(crate) struct RecordingClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RecordingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if verdict.is_err() {
            let facts = cert_facts(end_entity).ok();
            // Outside a listener's handshake task there is no slot, and nothing to record.
            let _ = REFUSED_CERT.try_with(|slot| *slot.borrow_mut() = facts);
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
