//! The benches' throwaway CA: certificates for the three porch nodes, for other hosts a bench
//! starts (etcd members) or plays (a TLS client, simulated agents), all from one dev CA.

use porch_tls::TlsPaths;
use porch_tls::dev_ca::{DevCa, Validity};
use std::path::{Path, PathBuf};

use super::NODES;

/// Node `index`'s certname; its certificate is also for 127.0.0.1 and localhost, the hosts
/// agents and the benches dial.
pub fn node_certname(index: usize) -> String {
    format!("porch{}", index + 1)
}

/// The hosts every server certificate of a bench is valid for.
const LOOPBACK_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Certificates from a throwaway CA: one ssldir per node, one per other host issued, one
/// shared by the simulated agents (`<prefix>1` .. `<prefix>N`, as `porch agent --sessions`
/// names them).
pub struct BenchPki {
    dir: PathBuf,
    ca: DevCa,
    agents_issued: usize,
}

impl BenchPki {
    pub fn create(dir: &Path) -> Result<BenchPki, String> {
        let ca = DevCa::create(&dir.join("ca")).map_err(|e| e.to_string())?;
        let pki = BenchPki {
            dir: dir.to_path_buf(),
            ca,
            agents_issued: 0,
        };
        for index in 0..NODES {
            pki.issue_host(&node_certname(index))?;
        }
        Ok(pki)
    }

    /// Issues `certname` a certificate valid for 127.0.0.1 and localhost (server and client
    /// use) into an ssldir of its own.
    pub fn issue_host(&self, certname: &str) -> Result<TlsPaths, String> {
        self.ca
            .issue(
                &self.dir.join(certname),
                certname,
                &LOOPBACK_NAMES,
                Validity::default(),
            )
            .map_err(|e| e.to_string())
    }

    pub fn node_ssldir(&self, index: usize) -> PathBuf {
        self.dir.join(node_certname(index))
    }

    pub fn cacert_path(&self) -> PathBuf {
        self.ca.cacert_path()
    }

    pub fn crl_path(&self) -> PathBuf {
        self.ca.crl_path()
    }

    pub fn agent_ssldir(&self) -> PathBuf {
        self.dir.join("agents")
    }

    /// Issues agent certificates up to `<prefix><count>` (the earlier ones are kept).
    pub fn issue_agents(&mut self, prefix: &str, count: usize) -> Result<(), String> {
        for i in self.agents_issued + 1..=count {
            self.ca
                .issue(
                    &self.agent_ssldir(),
                    &format!("{prefix}{i}"),
                    &[],
                    Validity::default(),
                )
                .map_err(|e| e.to_string())?;
        }
        self.agents_issued = self.agents_issued.max(count);
        Ok(())
    }
}
