//! Trust for TLS: the platform's root certificates, the CA bundle of `aws.tls.ca_file`, the
//! rustls client configuration, and TLS failures in words an operator can act on.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use super::super::error::{chain_text, TransportError};

/// A TLS failure in words an operator can act on.
pub(super) fn describe_tls(error: &rustls::Error, ca_file: Option<&Path>) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => match ca_file {
            None => "the certificate is not trusted (UnknownIssuer); set aws.tls.ca_file to your CA bundle".to_owned(),
            Some(path) => format!(
                "the certificate is not trusted (UnknownIssuer), not even with aws.tls.ca_file {}; add the issuing CA to that bundle",
                path.display()
            ),
        },
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the certificate does not name this host ({error}); check the endpoint URL"),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!("the certificate is outside its validity period ({error}); check this host's clock"),
        rustls::Error::InvalidCertificate(_) => {
            format!("the certificate is not accepted ({error})")
        }
        _ => format!("the TLS handshake failed ({error})"),
    }
}

/// The platform's root certificates (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`), read once.
pub(super) static NATIVE_ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(error = %chain_text(error), "Cannot read some of the platform's root certificates.");
    }
    loaded.certs
});

/// Whether the platform's store holds at least one usable root certificate.
pub(crate) fn native_roots_available() -> bool {
    RootCertStore::empty()
        .add_parsable_certificates(NATIVE_ROOTS.iter().cloned())
        .0
        > 0
}

/// The certificates of a CA bundle, checked to be usable as trust anchors.
pub(crate) struct CaBundle {
    /// The file as read (PEM).
    pub(crate) pem: Vec<u8>,
    pub(crate) certificates: Vec<CertificateDer<'static>>,
}

/// Reads and checks the PEM bundle at `path`: every certificate in it must be usable as a trust
/// anchor, and there must be at least one. Blocking file I/O: for start-up.
pub(crate) fn read_ca_file(path: &Path) -> Result<CaBundle, TransportError> {
    let config_error = |reason: String| TransportError::Config {
        path: path.to_owned(),
        reason,
    };
    let pem =
        std::fs::read(path).map_err(|error| config_error(format!("cannot read it: {error}")))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| config_error(format!("it is not a PEM file ({error})")))?;
    if certificates.is_empty() {
        return Err(config_error(
            "it holds no certificate (no -----BEGIN CERTIFICATE----- block)".to_owned(),
        ));
    }
    let mut check = RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        check.add(certificate.clone()).map_err(|error| {
            config_error(format!(
                "certificate {} in it is not usable as a CA: {error}",
                index + 1
            ))
        })?;
    }
    Ok(CaBundle { pem, certificates })
}

pub(super) fn tls_config(roots: Arc<RootCertStore>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
