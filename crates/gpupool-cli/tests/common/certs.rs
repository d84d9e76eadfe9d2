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
    openssl(dir, &["genrsa", "-out", "server.key", "2048"]);
    let subject = format!("/CN={server_name}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-subj",
            &subject,
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}
