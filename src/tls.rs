//! TLS for TURN (turns:) and HTTPS: one certificate store shared by every
//! listener. SIGHUP swaps the certificate in place: new handshakes get the new
//! one, established connections keep theirs.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, anyhow};
use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>> {
        Ok(Arc::new(CertStore {
            current: RwLock::new(Arc::new(load_certified_key(cert, key)?)),
        }))
    }

    /// Replaces the certificate; on error the old one stays.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<()> {
        let new = Arc::new(load_certified_key(cert, key)?);
        let mut cur = self
            .current
            .write()
            .map_err(|_| anyhow!("certificate store poisoned"))?;
        *cur = new;
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls.cert: cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "tls.cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(anyhow!("tls.cert: {} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "tls.key: cannot read a PEM private key from {}",
            key.display()
        )
    })?;
    let signing = ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("tls.key: unusable private key: {e}"))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| anyhow!("tls.key does not belong to tls.cert: {e}"))?;
    Ok(ck)
}

/// TLS 1.2 and 1.3 with the certificate from `store`. `alpn` lists the
/// protocols to offer (HTTP needs h2/http1.1; TURN needs none).
pub fn server_config(store: Arc<CertStore>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}
