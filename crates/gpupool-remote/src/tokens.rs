//! The server's clients file: one client per line, `NAME TOKEN [memory=SIZE] [spill=SIZE] [compute=PCT]`
//! (`#` starts a comment). Each client is its own tenant with those limits; its token is the
//! shared secret it proves it knows in the handshake (`handshake`).

use std::fmt;

/// Shortest token accepted (bytes).
pub const MIN_TOKEN: usize = 16;

/// One client the server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Tenant name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Its secret.
    pub token: Vec<u8>,
    /// Device memory limit as written (`memory=`), checked by the caller.
    pub memory: Option<String>,
    /// Host memory usable past the memory limit as written (`spill=`), checked by the caller.
    pub spill: Option<String>,
    /// Compute limit as written (`compute=`), checked by the caller.
    pub compute: Option<String>,
    /// The DNS name the client's TLS certificate must carry (`cert=`): its token alone does
    /// not admit it.
    pub cert: Option<String>,
}

/// A clients file that does not parse: which line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientsError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ClientsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ClientsError {}

/// Parses a clients file.
pub fn parse_clients(text: &str) -> Result<Vec<Client>, ClientsError> {
    let mut out: Vec<Client> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| ClientsError {
            line: i + 1,
            reason,
        };
        let mut words = line.split_whitespace();
        let (Some(name), Some(token)) = (words.next(), words.next()) else {
            return Err(err(
                "expected `NAME TOKEN [memory=SIZE] [spill=SIZE] [compute=PCT] [cert=DNSNAME]`"
                    .into(),
            ));
        };
        if name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(format!(
                "client name {name:?}: use at most 64 letters, digits, '-', '_' or '.'"
            )));
        }
        if token.len() < MIN_TOKEN {
            return Err(err(format!(
                "the token of {name:?} has {} characters; use at least {MIN_TOKEN} (e.g. `openssl rand -hex 32`)",
                token.len()
            )));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(err(format!("client {name:?} is listed twice")));
        }
        if out.iter().any(|c| c.token == token.as_bytes()) {
            return Err(err(format!(
                "client {name:?} reuses another client's token"
            )));
        }
        let mut c = Client {
            name: name.into(),
            token: token.as_bytes().to_vec(),
            memory: None,
            spill: None,
            compute: None,
            cert: None,
        };
        for w in words {
            match w.split_once('=') {
                Some(("memory", v)) if !v.is_empty() => c.memory = Some(v.into()),
                Some(("spill", v)) if !v.is_empty() => c.spill = Some(v.into()),
                Some(("compute", v)) if !v.is_empty() => c.compute = Some(v.into()),
                Some(("cert", v)) if crate::tls::is_dns_name(v) => c.cert = Some(v.into()),
                Some(("cert", v)) => {
                    return Err(err(format!(
                        "cert={v:?}: expected the DNS name the client's certificate carries (its subjectAltName)"
                    )))
                }
                _ => {
                    return Err(err(format!(
                        "{w:?}: expected memory=SIZE, spill=SIZE, compute=PCT or cert=DNSNAME"
                    )))
                }
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// Compares in time independent of where the inputs differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_parse_with_limits_and_comments() {
        let c = parse_clients(
            "# team clients\nalpha 0123456789abcdef0123 memory=4GiB spill=2GiB compute=30\n\nbeta fedcba9876543210fedc\n",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].memory.as_deref(), Some("4GiB"));
        assert_eq!(c[0].compute.as_deref(), Some("30"));
        assert_eq!(c[0].spill.as_deref(), Some("2GiB"));
        assert_eq!(c[1].memory, None);
        assert_eq!(c[1].cert, None);
        assert_eq!(c[1].token, b"fedcba9876543210fedc");
        assert!(same_secret(&c[1].token, b"fedcba9876543210fedc"));
        assert!(!same_secret(&c[1].token, b"fedcba9876543210fedd"));
        assert!(!same_secret(&c[1].token, b"fedcba9876543210fed"));
    }

    #[test]
    fn a_client_may_name_the_certificate_it_must_present() {
        let c = parse_clients("alpha 0123456789abcdef0123 cert=alpha.clients.example\n").unwrap();
        assert_eq!(c[0].cert.as_deref(), Some("alpha.clients.example"));
    }

    #[test]
    fn bad_lines_name_the_line_and_the_problem() {
        for (text, needle) in [
            ("alpha", "expected `NAME TOKEN"),
            ("al/pha 0123456789abcdef0123", "client name"),
            ("alpha short", "at least 16"),
            (
                "a 0123456789abcdef0123\na 1123456789abcdef0123",
                "listed twice",
            ),
            ("a 0123456789abcdef0123\nb 0123456789abcdef0123", "reuses"),
            ("a 0123456789abcdef0123 memory", "expected memory=SIZE"),
            (
                "a 0123456789abcdef0123 cert=",
                "cert=\"\": expected the DNS name",
            ),
            ("a 0123456789abcdef0123 cert=a..b", "cert=\"a..b\""),
            ("a 0123456789abcdef0123 cert=10.0.0.1", "cert=\"10.0.0.1\""),
        ] {
            let e = parse_clients(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("line "), "{e}");
        }
    }
}
