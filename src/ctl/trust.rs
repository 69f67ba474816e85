//! Whom `natbridge ctl` trusts over https. It connects to the daemon on the
//! same box, usually by a loopback address that the certificate does not
//! name, and often the certificate is self-signed; so instead of a CA and a
//! name check it trusts exactly the certificate in the daemon's own
//! `tls.cert` file (the handshake signature is still verified). `--insecure`
//! accepts any certificate.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::http_client::client_builder;

/// Trusts the leaf certificate of `cert_file` and nothing else.
pub fn pinned(cert_file: &Path) -> Result<Arc<ClientConfig>> {
    let leaf = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("tls.cert {}", cert_file.display()))?
        .next()
        .transpose()
        .with_context(|| format!("tls.cert {}", cert_file.display()))?;
    let Some(leaf) = leaf else {
        bail!("tls.cert {}: no certificate in it", cert_file.display());
    };
    Ok(with_verifier(Pinned {
        leaf: Some(leaf.into_owned()),
        provider: provider(),
    }))
}

/// Accepts any certificate (`--insecure`).
pub fn any() -> Arc<ClientConfig> {
    with_verifier(Pinned {
        leaf: None,
        provider: provider(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn with_verifier(v: Pinned) -> Arc<ClientConfig> {
    Arc::new(
        client_builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(v))
            .with_no_client_auth(),
    )
}

/// `leaf: None` trusts every certificate.
#[derive(Debug)]
struct Pinned {
    leaf: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.leaf {
            Some(leaf) if leaf.as_ref() != end_entity.as_ref() => Err(Error::General(
                "the server's certificate is not the one in tls.cert (use --insecure to skip the check)"
                    .into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
