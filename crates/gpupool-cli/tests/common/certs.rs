//! Certificates for tests, made with `openssl`.

use std::path::Path;
use std::process::Command;

/// Runs `openssl ARGS` in `dir`; fails the test with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the tests make their certificates with it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In `dir`: `ca.key` and `ca.crt` (a CA named `ca_name`), and `server.key` and `server.crt`
/// (named `server_name`, for 127.0.0.1 and localhost, signed by the CA).
pub fn ca_and_server(dir: &Path, ca_name: &str, server_name: &str) {
    openssl(dir, &["genrsa", "-out", "ca.key", "2048"]);
    let ca_subject = format!("/CN={ca_name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-days",
            "2",
            "-subj",
            &ca_subject,
            "-out",
            "ca.crt",
        ],
    );
    signed(
        dir,
        "server",
        server_name,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
}

/// In `dir`, beside the CA of [`ca_and_server`]: `client.key` and `client.crt` (named
/// `client_name`, as its common name and DNS name, for client authentication, signed by that
/// CA).
pub fn client(dir: &Path, client_name: &str) {
    let ext = format!("subjectAltName=DNS:{client_name}\nextendedKeyUsage=clientAuth\n");
    signed(dir, "client", client_name, &ext);
}

/// `NAME.key` and `NAME.crt` in `dir`: a certificate for `subject_name` with the extensions
/// `ext`, signed by `dir`'s CA.
fn signed(dir: &Path, name: &str, subject_name: &str, ext: &str) {
    let (key, csr, crt, ext_file) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(dir, &["genrsa", "-out", &key, "2048"]);
    let subject = format!("/CN={subject_name}");
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
    );
    std::fs::write(dir.join(&ext_file), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &crt,
        ],
    );
}
