//! PEM files as rustls takes them: certificate chains, private keys, the CAs a peer's
//! certificate must come from, and a verifier that admits only clients with such a
//! certificate. Every error names the file and `what` named it (an option or a variable).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::path::Path;
use std::sync::Arc;

/// The crypto provider every gpupool TLS configuration uses (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// The CA certificates of a PEM file, as the roots a peer's certificate must chain to.
pub fn roots(path: &Path, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certificates(path, what)? {
        roots
            .add(c)
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A verifier that admits only clients presenting a certificate the CAs of `ca` issued.
pub fn client_verifier(ca: &Path, what: &str) -> Result<Arc<dyn ClientCertVerifier>, String> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca, what)?), provider())
        .build()
        .map_err(|e| format!("{what} {}: {e}", ca.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gpupool-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn files_without_what_they_should_hold_are_named_in_the_error() {
        let d = dir("errors");
        let empty = d.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = certificates(&empty, "--tls-ca").unwrap_err();
        assert!(
            e.contains("--tls-ca") && e.contains("empty.pem") && e.contains("no PEM"),
            "{e}"
        );
        let e = roots(&d.join("absent.pem"), "SOME_VAR").unwrap_err();
        assert!(e.contains("SOME_VAR") && e.contains("absent.pem"), "{e}");
        let e = private_key(&empty, "--tls-key").unwrap_err();
        assert!(e.contains("--tls-key") && e.contains("empty.pem"), "{e}");
        let e = client_verifier(&empty, "--tls-client-ca").err().unwrap();
        assert!(e.contains("--tls-client-ca"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
