//! The agent's TLS flags, loaded into one checked identity per certname at start: a missing,
//! garbage or expired file, or a certificate for another certname, stops the agent before it
//! dials anything, with the file named.

use clap::Args;
use porch_tls::{TlsIdentity, TlsPaths, default_ssldir};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Puppet's ssldir: the agent presents `certs/<certname>.pem` with
    /// `private_keys/<certname>.pem`, trusts only `certs/ca.pem` and checks `crl.pem` when
    /// present. With --sessions N it holds one certificate per simulated certname
    /// (`<certname>1` .. `<certname>N`). [default: Puppet's, e.g. /etc/puppetlabs/puppet/ssl
    /// for root]
    #[arg(long, conflicts_with = "insecure_http")]
    pub ssldir: Option<PathBuf>,
    /// This host's certificate (PEM), instead of the ssldir's.
    #[arg(long, requires = "key", conflicts_with = "insecure_http")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM), instead of the ssldir's.
    #[arg(long, requires = "cert", conflicts_with = "insecure_http")]
    pub key: Option<PathBuf>,
    /// The CA certificate(s) to trust (PEM), instead of the ssldir's `certs/ca.pem`.
    #[arg(long, conflicts_with = "insecure_http")]
    pub cacert: Option<PathBuf>,
    /// The CA's revocation list (PEM), instead of the ssldir's `crl.pem`.
    #[arg(long, conflicts_with = "insecure_http")]
    pub crl: Option<PathBuf>,
    /// Talk plain, unencrypted HTTP without certificates (tests and benchmarks only). Service
    /// URLs must then be http://; without this flag they must be https:// (the scheme always
    /// says what is on the wire).
    #[arg(long)]
    pub insecure_http: bool,
    /// How often the certificate, key, CA and CRL files are checked for changes; a changed
    /// file is used from the next connection on. 0 turns reloading off.
    #[arg(long, default_value_t = 10)]
    pub tls_reload_secs: u64,
}

impl TlsArgs {
    /// The files for `certname`: the ssldir's, with each explicit flag overriding its file.
    /// `--cert`/`--key` name one certificate, so they only apply to a single agent.
    pub fn paths(&self, certname: &str) -> TlsPaths {
        let ssldir = self.ssldir.clone().unwrap_or_else(default_ssldir);
        TlsPaths::from_ssldir(&ssldir, certname).with_overrides(
            self.cert.as_deref(),
            self.key.as_deref(),
            self.cacert.as_deref(),
            self.crl.as_deref(),
        )
    }

    /// Loads and checks the identity of `certname`: every file readable and consistent, the
    /// certificate valid now and issued for `certname` (the orchestrator opens sessions only
    /// for the certificate's certname, so a mismatch could never connect).
    pub fn load_identity(&self, certname: &str) -> Result<Arc<TlsIdentity>, String> {
        let paths = self.paths(certname);
        let cert_missing = !paths.cert.exists();
        let identity = TlsIdentity::load(paths.clone()).map_err(|error| {
            if cert_missing && self.cert.is_none() {
                format!(
                    "{error} (no certificate for '{certname}' in the ssldir: is this host's \
                     certificate signed? `puppet ssl bootstrap` fetches it; --ssldir, or \
                     --cert and --key, point elsewhere)"
                )
            } else {
                error.to_string()
            }
        })?;
        let actual = identity.certname();
        if actual != certname {
            return Err(format!(
                "--certname {certname} but the certificate {} is for '{actual}'",
                paths.cert.display()
            ));
        }
        Ok(identity)
    }
}

/// Polls every identity's files each `interval` in one task (thousands of simulated agents
/// share it, rather than a task each), keeping the previous configuration of any whose new
/// files are bad. Ends when every identity is dropped.
pub fn spawn_reloader(
    identities: &[Arc<TlsIdentity>],
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let identities: Arc<[Weak<TlsIdentity>]> = identities.iter().map(Arc::downgrade).collect();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let identities = identities.clone();
            let alive = tokio::task::spawn_blocking(move || {
                let mut alive = 0usize;
                for identity in identities.iter().filter_map(Weak::upgrade) {
                    alive += 1;
                    if let Err(error) = identity.reload_now() {
                        tracing::warn!(
                            "{}: TLS reload failed, keeping the previous certificates: {error}",
                            identity.certname()
                        );
                    }
                }
                alive
            })
            .await;
            if alive.unwrap_or(0) == 0 {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use porch_tls::dev_ca::{DevCa, Validity};

    #[tokio::test]
    async fn one_reloader_picks_up_every_agents_renewed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::create(&dir.path().join("ca")).unwrap();
        let ssldir = dir.path().join("ssl");
        let identities: Vec<Arc<TlsIdentity>> = ["fan1", "fan2"]
            .iter()
            .map(|certname| {
                TlsIdentity::load(
                    ca.issue(&ssldir, certname, &[], Validity::default())
                        .unwrap(),
                )
                .unwrap()
            })
            .collect();
        let before: Vec<_> = identities.iter().map(|i| i.client_config()).collect();
        let reloader = spawn_reloader(&identities, Duration::from_millis(20));
        for certname in ["fan1", "fan2"] {
            ca.issue(&ssldir, certname, &[], Validity::default())
                .unwrap();
        }
        let renewed = |identities: &[Arc<TlsIdentity>]| {
            identities
                .iter()
                .zip(&before)
                .all(|(identity, old)| !Arc::ptr_eq(&identity.client_config(), old))
        };
        for _ in 0..250 {
            if renewed(&identities) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(renewed(&identities), "both identities reloaded within 5 s");
        drop(identities);
        tokio::time::timeout(Duration::from_secs(5), reloader)
            .await
            .expect("the reloader ends once every identity is dropped")
            .unwrap();
    }
}
