//! The handshake's authentication: each side proves it knows the client's token without
//! sending it. The client's hello carries a fresh nonce; the server answers with its own
//! challenge nonce; the client proves the token with an HMAC-SHA256 over both nonces and its
//! label, and the server's acceptance carries its own HMAC over them, so that
//!
//! - someone who reads the connection learns nothing that lets them connect later (the token
//!   never travels, and a proof is bound to the server's fresh nonce);
//! - a client knows it reached a server that holds its token.
//!
//! What follows the handshake travels in clear (see `docs/remote.md`).

use crate::protocol::*;
use crate::tokens::{same_secret, Client};
use ring::hmac;
use std::io::{self, Read, Write};

/// Bytes of a nonce.
pub const NONCE: usize = 32;
/// A nonce: fresh random bytes for one handshake.
pub type Nonce = [u8; NONCE];
/// Bytes of a proof.
pub const PROOF: usize = 32;
/// A proof that its sender knows a token (HMAC-SHA256).
pub type Proof = [u8; PROOF];

/// A fresh nonce from the system's random source.
pub fn nonce() -> io::Result<Nonce> {
    let mut n = [0u8; NONCE];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
        .map_err(|_| io::Error::other("the system's random source failed"))?;
    Ok(n)
}

/// HMAC-SHA256 keyed by `token` over `parts`, each preceded by its length (so no two lists of
/// parts give the same input).
fn mac(token: &[u8], parts: &[&[u8]]) -> Proof {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; PROOF];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// What a client sends to prove it knows `token`.
pub fn client_proof(token: &[u8], server: &Nonce, client: &Nonce, label: &str) -> Proof {
    mac(
        token,
        &[b"gpupool client proof", server, client, label.as_bytes()],
    )
}

/// What a server sends to prove it knows `token`.
pub fn server_proof(token: &[u8], client: &Nonce, server: &Nonce) -> Proof {
    mac(token, &[b"gpupool server proof", client, server])
}

/// Why a server turned a connection away: what to log, and the accept to send (if any).
#[derive(Debug)]
pub struct Refusal {
    /// For the server's log.
    pub reason: String,
    /// The answer the client gets, if the connection can still carry one.
    pub answer: Option<Vec<u8>>,
}

/// An accepted client: who it is and what it calls itself.
#[derive(Debug)]
pub struct Admitted<'a> {
    /// The client whose token it proved.
    pub client: &'a Client,
    /// Its label (host and pid), for the log.
    pub label: String,
}

/// A connection that may know the certificate its peer presented (TLS with client
/// certificates).
pub trait PeerCertificate {
    /// The peer's certificate (DER), once the TLS handshake is done; `None` without one.
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        None
    }
}

impl PeerCertificate for std::net::TcpStream {}
impl PeerCertificate for std::os::unix::net::UnixStream {}

/// Why a client whose token matched is still refused: its certificate does not carry the
/// name its `cert=` requires.
fn certificate_refusal(client: &Client, presented: Option<&[u8]>) -> Option<String> {
    let name = client.cert.as_deref()?;
    match presented {
        None => Some(format!(
            "client {} must present a TLS certificate naming {name} (--tls-cert / GPUPOOL_REMOTE_TLS_CERT)",
            client.name
        )),
        Some(der) if !crate::tls::certificate_names(der, name) => Some(format!(
            "the client's TLS certificate does not name {name}, which client {} requires",
            client.name
        )),
        Some(_) => None,
    }
}

/// The server's side: reads the hello, challenges, checks the proof against every client's
/// token (and the certificate a `cert=` client must present), and answers. On success the
/// accept has been written.
pub fn server_side<'a>(
    conn: &mut (impl Read + Write + PeerCertificate),
    clients: &'a [Client],
) -> Result<Admitted<'a>, Refusal> {
    let refuse = |status: u32, reason: String, message: &str| Refusal {
        answer: Some(encode_accept(status, message, &[0; PROOF])),
        reason,
    };
    let hello = match Hello::read_from(conn) {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return Err(refuse(STATUS_MALFORMED, e.to_string(), &e.to_string())),
        Err(e) => {
            return Err(Refusal {
                reason: format!("no complete hello ({e})"),
                answer: None,
            })
        }
    };
    if hello.version != VERSION {
        let msg = format!(
            "the client speaks protocol version {}, this server {VERSION}; use matching gpupool releases",
            hello.version
        );
        return Err(refuse(STATUS_VERSION, msg.clone(), &msg));
    }
    let label = hello.client;
    let server = nonce().map_err(|e| refuse(STATUS_UNAVAILABLE, e.to_string(), &e.to_string()))?;
    let mut proof = [0u8; PROOF];
    if let Err(e) = conn
        .write_all(&encode_challenge(&server))
        .and_then(|()| conn.read_exact(&mut proof))
    {
        return Err(Refusal {
            reason: format!("({label}) no proof of a token ({e})"),
            answer: None,
        });
    }
    // Every client is tried, so the time taken does not tell which one matched.
    let mut found = None;
    for c in clients {
        if same_secret(
            &client_proof(&c.token, &server, &hello.nonce, &label),
            &proof,
        ) {
            found = Some(c);
        }
    }
    let Some(client) = found else {
        return Err(refuse(
            STATUS_UNAUTHORIZED,
            format!("({label}) unknown token"),
            "the server does not know this token (GPUPOOL_REMOTE_TOKEN / --token-file)",
        ));
    };
    if let Some(why) = certificate_refusal(client, conn.peer_certificate().as_deref()) {
        return Err(refuse(
            STATUS_UNAUTHORIZED,
            format!("({label}) {why}"),
            &why,
        ));
    }
    let accept = encode_accept(
        STATUS_OK,
        "",
        &server_proof(&client.token, &hello.nonce, &server),
    );
    conn.write_all(&accept).map_err(|e| Refusal {
        reason: format!("({label}) the accept could not be sent ({e})"),
        answer: None,
    })?;
    Ok(Admitted { client, label })
}

/// How a client's handshake ended without a session.
#[derive(Debug)]
pub enum ClientError {
    /// The connection failed or the server does not speak the protocol.
    Io(io::Error),
    /// The server refused: its status and message.
    Refused(u32, String),
    /// The server accepted without proving it knows the token.
    ServerUnproven,
}

/// The client's side: sends the hello, answers the challenge with a proof of `token`, and
/// checks the server's proof.
pub fn client_side(
    sock: &mut (impl Read + Write),
    token: &[u8],
    label: &str,
) -> Result<(), ClientError> {
    let io = |e: io::Error| {
        ClientError::Io(if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                e.kind(),
                "the server closed the connection during the handshake (if it listens on a \
                 tls:// address, connect to that)",
            )
        } else {
            e
        })
    };
    let client = nonce().map_err(io)?;
    let hello = Hello {
        version: VERSION,
        nonce: client,
        client: label.to_string(),
    };
    sock.write_all(&hello.encode()).map_err(io)?;
    let server = match read_answer(sock).map_err(io)? {
        Answer::Challenge(n) => n,
        Answer::Accept {
            status, message, ..
        } => return Err(ClientError::Refused(status, message)),
    };
    sock.write_all(&client_proof(token, &server, &client, label))
        .map_err(io)?;
    match read_answer(sock).map_err(io)? {
        Answer::Accept {
            status: STATUS_OK,
            proof: Some(p),
            ..
        } if same_secret(&p, &server_proof(token, &client, &server)) => Ok(()),
        Answer::Accept {
            status: STATUS_OK, ..
        } => Err(ClientError::ServerUnproven),
        Answer::Accept {
            status, message, ..
        } => Err(ClientError::Refused(status, message)),
        Answer::Challenge(_) => Err(ClientError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server challenged twice",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_mac_is_hmac_sha256() {
        // RFC 4231, test case 2, through the same primitive without length prefixes.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn proofs_depend_on_token_nonces_label_and_direction() {
        let (a, b) = ([1u8; NONCE], [2u8; NONCE]);
        let p = client_proof(b"token-0123456789", &a, &b, "host pid 1");
        assert_ne!(p, client_proof(b"token-0123456788", &a, &b, "host pid 1"));
        assert_ne!(p, client_proof(b"token-0123456789", &b, &a, "host pid 1"));
        assert_ne!(p, client_proof(b"token-0123456789", &a, &b, "host pid 2"));
        assert_ne!(p, server_proof(b"token-0123456789", &b, &a));
        assert_eq!(p, client_proof(b"token-0123456789", &a, &b, "host pid 1"));
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }

    /// A stream that records what is written through it.
    struct Recording<'a> {
        inner: UnixStream,
        sent: &'a mut Vec<u8>,
    }

    impl Read for Recording<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.inner.read(b)
        }
    }

    impl Write for Recording<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(b)?;
            self.sent.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn client(name: &str, token: &str) -> Client {
        Client {
            name: name.into(),
            token: token.as_bytes().to_vec(),
            memory: None,
            spill: None,
            compute: None,
            cert: None,
        }
    }

    /// Runs both sides over a socket pair: the client's result, what it sent, the server's.
    fn shake(token: &str, clients: Vec<Client>) -> (Result<(), ClientError>, Vec<u8>, String) {
        let (c, mut s) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || match server_side(&mut s, &clients) {
            Ok(a) => a.client.name.clone(),
            Err(r) => {
                if let Some(answer) = r.answer {
                    let _ = s.write_all(&answer);
                }
                format!("refused: {}", r.reason)
            }
        });
        let mut sent = Vec::new();
        let mut rec = Recording {
            inner: c,
            sent: &mut sent,
        };
        let got = client_side(&mut rec, token.as_bytes(), "host pid 7");
        (got, sent, server.join().unwrap())
    }

    #[test]
    fn a_client_proves_its_token_without_sending_it() {
        let clients = vec![
            client("a", "aaaaaaaaaaaaaaaaaaaa"),
            client("b", "bbbbbbbbbbbbbbbbbbbb"),
        ];
        let (got, sent, server) = shake("bbbbbbbbbbbbbbbbbbbb", clients.clone());
        assert!(got.is_ok(), "{got:?}");
        assert_eq!(server, "b");
        assert!(
            !sent.windows(20).any(|w| w == b"bbbbbbbbbbbbbbbbbbbb"),
            "the token went over the wire"
        );
        let (got, _, server) = shake("cccccccccccccccccccc", clients);
        assert!(
            matches!(&got, Err(ClientError::Refused(STATUS_UNAUTHORIZED, m)) if m.contains("token")),
            "{got:?}"
        );
        assert!(server.contains("unknown token"), "{server}");
    }

    #[test]
    fn a_client_bound_to_a_certificate_needs_one_that_names_it() {
        let bound = Client {
            cert: Some("b.clients.example".into()),
            ..client("b", "bbbbbbbbbbbbbbbbbbbb")
        };
        let (got, _, server) = shake("bbbbbbbbbbbbbbbbbbbb", vec![bound.clone()]);
        assert!(
            matches!(&got, Err(ClientError::Refused(STATUS_UNAUTHORIZED, m))
                if m.contains("must present a TLS certificate naming b.clients.example")),
            "{got:?}"
        );
        assert!(server.starts_with("refused: "), "{server}");
        assert!(
            certificate_refusal(&bound, Some(b"not a certificate"))
                .is_some_and(|m| m.contains("does not name b.clients.example")),
            "a certificate webpki cannot read names nothing"
        );
        assert_eq!(
            certificate_refusal(&client("a", "aaaaaaaaaaaaaaaaaaaa"), None),
            None
        );
    }

    #[test]
    fn a_proof_seen_once_does_not_admit_again() {
        // Someone who recorded a client's proof replays it on a new connection: the server's
        // new challenge makes it worthless.
        let clients = vec![client("a", "aaaaaaaaaaaaaaaaaaaa")];
        let (got, sent, _) = shake("aaaaaaaaaaaaaaaaaaaa", clients.clone());
        assert!(got.is_ok(), "{got:?}");
        let (hello, proof) = sent.split_at(sent.len() - PROOF);
        let (mut c, mut s) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || server_side(&mut s, &clients).is_ok());
        c.write_all(hello).unwrap();
        assert!(matches!(read_answer(&mut c).unwrap(), Answer::Challenge(_)));
        c.write_all(proof).unwrap();
        assert!(!server.join().unwrap(), "a replayed proof was accepted");
    }

    #[test]
    fn a_server_that_cannot_prove_the_token_is_refused_by_the_client() {
        let (mut c, mut s) = UnixStream::pair().unwrap();
        let impostor = std::thread::spawn(move || {
            let hello = Hello::read_from(&mut s).unwrap().unwrap();
            assert_eq!(hello.version, VERSION);
            s.write_all(&encode_challenge(&[9; NONCE])).unwrap();
            let mut proof = [0u8; PROOF];
            s.read_exact(&mut proof).unwrap();
            s.write_all(&encode_accept(STATUS_OK, "", &[0; PROOF]))
                .unwrap();
        });
        let got = client_side(&mut c, b"aaaaaaaaaaaaaaaaaaaa", "host pid 7");
        impostor.join().unwrap();
        assert!(matches!(got, Err(ClientError::ServerUnproven)), "{got:?}");
    }

    #[test]
    fn another_protocol_version_is_refused_with_both_versions_named() {
        let (mut c, mut s) = UnixStream::pair().unwrap();
        let mut old = Vec::new();
        old.extend_from_slice(&MAGIC);
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&16u64.to_le_bytes());
        old.extend_from_slice(b"aaaaaaaaaaaaaaaa");
        c.write_all(&old).unwrap();
        let refusal = server_side(&mut s, &[client("a", "aaaaaaaaaaaaaaaa")]).unwrap_err();
        s.write_all(&refusal.answer.unwrap()).unwrap();
        match read_answer(&mut c).unwrap() {
            Answer::Accept {
                status, message, ..
            } => {
                assert_eq!(status, STATUS_VERSION);
                assert!(message.contains("version 1") && message.contains(&VERSION.to_string()));
            }
            other => panic!("{other:?}"),
        }
    }
}
