//! A throwaway certificate authority for the test servers' HTTPS listeners: made at start, its
//! certificate written to a PEM file a client (the agent's `aws.tls.ca_file`) can trust, and one
//! server certificate it signed for `localhost` and `127.0.0.1`. The key never leaves memory
//! and the files go with the value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// The names the server certificate is good for: loopback by name and by address.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

pub struct ThrowawayCa {
    /// Holds `ca.pem`; removed when dropped.
    _dir: tempfile::TempDir,
    ca_pem_path: PathBuf,
    server_config: Arc<ServerConfig>,
}

impl ThrowawayCa {
    /// A new CA and a server certificate for [`SERVER_NAMES`], offering `alpn` in that order.
    pub fn generate(alpn: &[&[u8]]) -> Result<ThrowawayCa, String> {
        let ca_key = KeyPair::generate().map_err(|error| format!("a CA key: {error}"))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .map_err(|error| format!("CA parameters: {error}"))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kinship test CA (throwaway)");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|error| format!("self-signing the CA: {error}"))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(|error| format!("a server key: {error}"))?;
        let names: Vec<String> = SERVER_NAMES.iter().map(|name| name.to_string()).collect();
        let mut server_params = CertificateParams::new(names)
            .map_err(|error| format!("server certificate parameters: {error}"))?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .map_err(|error| format!("signing the server certificate: {error}"))?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = vec![
            server_cert.der().clone(),
            CertificateDer::clone(ca_cert.der()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let mut server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS versions: {error}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| format!("the server certificate: {error}"))?;
        server_config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();

        let dir = tempfile::Builder::new()
            .prefix("kinship-test-ca-")
            .tempdir()
            .map_err(|error| format!("a directory for the CA certificate: {error}"))?;
        let ca_pem_path = dir.path().join("ca.pem");
        std::fs::write(&ca_pem_path, ca_cert.pem())
            .map_err(|error| format!("writing {}: {error}", ca_pem_path.display()))?;
        Ok(ThrowawayCa {
            _dir: dir,
            ca_pem_path,
            server_config: Arc::new(server_config),
        })
    }

    /// The CA certificate (PEM), the one root a client needs to trust the server.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.server_config))
    }
}
