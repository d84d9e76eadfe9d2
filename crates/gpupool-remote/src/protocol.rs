//! The remote-GPU protocol: a handshake, then length-prefixed frames.
//!
//! ```text
//! client → server   hello      MAGIC, version u32, client nonce [u8; 32], client label bytes
//! server → client   challenge  MAGIC, version u32, STATUS_CHALLENGE u32, server nonce [u8; 32]
//! client → server   proof      [u8; 32]: HMAC-SHA256 of both nonces and the label by its token
//! server → client   accept     MAGIC, version u32, status u32, message bytes, proof [u8; 32]
//! server → client   welcome    frame: status u32, message bytes, driver version i32,
//!                              devices u32, per device: uuid [u8; 16], pci [i32; 3]
//! client → server   request    frame: call u16, flags u16, context u64, arguments
//! server → client   reply      frame: result u32, deferred u32, results
//! ```
//!
//! A refusal may come instead of the challenge (another version, a malformed hello); the
//! accept's proof is the server's HMAC (zeros in a refusal). See [`crate::handshake`].
//!
//! A frame is a `u32` length then that many bytes, at most [`MAX_FRAME`]. Requests without
//! [`FLAG_SYNC`] get no reply: their first error is returned as `deferred` with the next reply,
//! as CUDA reports asynchronous errors at the next synchronising call. A server that refuses a
//! message answers a reply whose result is [`REFUSED`], followed by its reason, and closes.

use crate::handshake::{Nonce, Proof, NONCE, PROOF};
use crate::wire::{DecodeError, Pod, Reader, Writer};
use std::io::{self, Read, Write};

/// First bytes of a hello and of an accept.
pub const MAGIC: [u8; 8] = *b"GPUPOOLR";
/// Protocol version; a server refuses any other.
pub const VERSION: u32 = 7;
/// Largest frame either side accepts (bulk copies are chunked well below it).
pub const MAX_FRAME: usize = (64 << 20) + 4096;
/// Bulk copies travel in chunks of at most this many bytes.
pub const CHUNK: usize = 8 << 20;
/// Longest client label a hello may carry (and message an accept may).
pub const MAX_HELLO_FIELD: usize = 4096;
/// Request flag: the client waits for a reply.
pub const FLAG_SYNC: u16 = 1;
/// Reply result meaning "message refused; reason follows; connection closing".
pub const REFUSED: u32 = u32::MAX;

/// Handshake status: accepted.
pub const STATUS_OK: u32 = 0;
/// Handshake status: the client speaks another protocol version.
pub const STATUS_VERSION: u32 = 1;
/// Handshake status: missing or wrong token.
pub const STATUS_UNAUTHORIZED: u32 = 2;
/// Handshake status: the hello did not decode.
pub const STATUS_MALFORMED: u32 = 3;
/// Handshake status: the server could not start a session (e.g. no driver).
pub const STATUS_UNAVAILABLE: u32 = 4;
/// Handshake status of a challenge (not an answer): a nonce follows.
pub const STATUS_CHALLENGE: u32 = 5;

/// A client's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u32,
    /// The client's fresh nonce.
    pub nonce: Nonce,
    /// What the client calls itself (host and pid), for the server's log.
    pub client: String,
}

impl Hello {
    /// The hello's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.put(&MAGIC);
        w.put(&self.version);
        w.buf.extend_from_slice(&self.nonce);
        w.put_bytes(self.client.as_bytes());
        w.buf
    }

    /// Reads a hello from a stream, refusing oversized fields before reading them. A hello of
    /// another version is returned after its version (with no nonce or label), unread further.
    pub fn read_from(r: &mut impl Read) -> io::Result<Result<Hello, DecodeError>> {
        let mut head = [0u8; 12];
        r.read_exact(&mut head)?;
        let mut rd = Reader::new(&head);
        let magic: [u8; 8] = rd.get("magic").map_err(invalid)?;
        if magic != MAGIC {
            return Ok(Err(DecodeError {
                what: "magic (not a gpupool remote client)",
                at: 0,
            }));
        }
        let version: u32 = rd.get("version").map_err(invalid)?;
        let mut nonce = [0u8; NONCE];
        if version != VERSION {
            return Ok(Ok(Hello {
                version,
                nonce,
                client: String::new(),
            }));
        }
        r.read_exact(&mut nonce)?;
        let client = match read_field(r, "client label")? {
            Ok(c) => String::from_utf8_lossy(&c).into_owned(),
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(Hello {
            version,
            nonce,
            client,
        }))
    }
}

fn read_field(r: &mut impl Read, what: &'static str) -> io::Result<Result<Vec<u8>, DecodeError>> {
    let mut n = [0u8; 8];
    r.read_exact(&mut n)?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HELLO_FIELD as u64 {
        return Ok(Err(DecodeError { what, at: 12 }));
    }
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v)?;
    Ok(Ok(v))
}

fn invalid(e: DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The server's challenge: its fresh nonce.
pub fn encode_challenge(nonce: &Nonce) -> Vec<u8> {
    let mut w = Writer::default();
    w.put(&MAGIC);
    w.put(&VERSION);
    w.put(&STATUS_CHALLENGE);
    w.buf.extend_from_slice(nonce);
    w.buf
}

/// The server's answer to a client's proof (or its refusal of a hello): a status, a message,
/// and its own proof (zeros in a refusal).
pub fn encode_accept(status: u32, message: &str, proof: &Proof) -> Vec<u8> {
    let mut w = Writer::default();
    w.put(&MAGIC);
    w.put(&VERSION);
    w.put(&status);
    w.put_bytes(message.as_bytes());
    w.buf.extend_from_slice(proof);
    w.buf
}

/// What a server sends a client during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Prove the token over this nonce.
    Challenge(Nonce),
    /// Accepted ([`STATUS_OK`]) or refused.
    Accept {
        /// [`STATUS_OK`] or why not.
        status: u32,
        /// Explanation of a refusal.
        message: String,
        /// The server's proof (`None` from a server of another protocol version).
        proof: Option<Proof>,
    },
}

/// Reads a challenge or an accept.
pub fn read_answer(r: &mut impl Read) -> io::Result<Answer> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head)?;
    let mut rd = Reader::new(&head);
    let magic: [u8; 8] = rd.get("magic").map_err(invalid)?;
    if magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server does not speak the gpupool remote protocol",
        ));
    }
    let version: u32 = rd.get("version").map_err(invalid)?;
    let status: u32 = rd.get("status").map_err(invalid)?;
    if version == VERSION && status == STATUS_CHALLENGE {
        let mut nonce = [0u8; NONCE];
        r.read_exact(&mut nonce)?;
        return Ok(Answer::Challenge(nonce));
    }
    let msg = read_field(r, "message")?.map_err(invalid)?;
    let proof = if version == VERSION {
        let mut p = [0u8; PROOF];
        r.read_exact(&mut p)?;
        Some(p)
    } else {
        None
    };
    Ok(Answer::Accept {
        status,
        message: String::from_utf8_lossy(&msg).into_owned(),
        proof,
    })
}

/// One device as the session describes it in its welcome.
pub use gpupool_cuda::export_tables::DeviceFacts;

/// What a session tells its client once the driver is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// [`STATUS_OK`], or why the session cannot serve.
    pub status: u32,
    /// Explanation when `status` is not OK.
    pub message: String,
    /// `cuDriverGetVersion` on the server.
    pub driver_version: i32,
    /// The devices the client may use.
    pub devices: Vec<DeviceFacts>,
}

impl Welcome {
    /// The welcome frame's body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.put(&self.status);
        w.put_bytes(self.message.as_bytes());
        w.put(&self.driver_version);
        w.put(&(self.devices.len() as u32));
        for d in &self.devices {
            w.put(&d.uuid);
            w.put(&d.pci);
        }
        w.buf
    }

    /// Decodes a welcome frame's body.
    pub fn decode(body: &[u8]) -> Result<Welcome, DecodeError> {
        let mut r = Reader::new(body);
        let status = r.get("status")?;
        let message = String::from_utf8_lossy(r.get_bytes("message")?).into_owned();
        let driver_version = r.get("driver version")?;
        let n: u32 = r.get("device count")?;
        let mut devices = Vec::new();
        for _ in 0..n.min(64) {
            devices.push(DeviceFacts {
                uuid: r.get("device uuid")?,
                pci: r.get("device pci")?,
            });
        }
        r.end()?;
        Ok(Welcome {
            status,
            message,
            driver_version,
            devices,
        })
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(body)
}

/// Reads one frame into `buf`, refusing one longer than [`MAX_FRAME`] before reading it.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let n = read_frame_reusing(r, buf)?;
    buf.truncate(n);
    Ok(())
}

/// Reads one frame into the start of `buf` and returns its length; `buf` keeps the length it
/// had when that was longer, so a reused buffer is not zeroed again for every frame.
pub fn read_frame_reusing(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let n = u32::from_le_bytes(n) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {n} bytes exceeds the limit of {MAX_FRAME}"),
        ));
    }
    if buf.len() < n {
        buf.resize(n, 0);
    }
    r.read_exact(&mut buf[..n])?;
    Ok(n)
}

/// The fixed head of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Which call (see [`crate::calls`]).
    pub call: u16,
    /// [`FLAG_SYNC`] or 0.
    pub flags: u16,
    /// The calling thread's current context on the client (0: none).
    pub context: u64,
}

/// Bytes of a request head.
pub const REQUEST_HEAD: usize = 12;

impl RequestHead {
    /// Appends the head (the frame length is patched in by [`finish_request`]).
    pub fn put(&self, w: &mut Writer) {
        w.put(&self.call);
        w.put(&self.flags);
        w.put(&self.context);
    }

    /// Reads the head of a request body.
    pub fn get(r: &mut Reader<'_>) -> Result<RequestHead, DecodeError> {
        Ok(RequestHead {
            call: r.get("call")?,
            flags: r.get("flags")?,
            context: r.get("context")?,
        })
    }
}

/// Starts a request frame in `w` (length placeholder, head); returns where it starts.
pub fn start_request(w: &mut Writer, head: RequestHead) -> usize {
    let start = w.buf.len();
    w.put(&0u32);
    head.put(w);
    start
}

/// Patches the length of the request frame begun at `start`.
pub fn finish_request(w: &mut Writer, start: usize) {
    let len = (w.buf.len() - start - 4) as u32;
    w.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Reads `T` from a reply or fails with a message naming the field.
pub fn field<T: Pod>(r: &mut Reader<'_>, what: &'static str) -> Result<T, DecodeError> {
    r.get(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_into_a_reused_buffer_keep_their_own_length() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &[7u8; 100]).unwrap();
        write_frame(&mut wire, &[9u8; 10]).unwrap();
        write_frame(&mut wire, &[]).unwrap();
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert_eq!(read_frame_reusing(&mut r, &mut buf).unwrap(), 100);
        assert_eq!(read_frame_reusing(&mut r, &mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], &[9u8; 10]);
        assert_eq!(buf.len(), 100, "kept, not zeroed again");
        read_frame(&mut r, &mut buf).unwrap();
        assert!(buf.is_empty());
        let e = read_frame(&mut r, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // A frame cut short is an error, not a short frame.
        let mut r = &wire[..50];
        assert!(read_frame_reusing(&mut r, &mut buf).is_err());
    }

    #[test]
    fn hello_round_trips_and_refuses_junk() {
        let h = Hello {
            version: VERSION,
            nonce: [5; NONCE],
            client: "host:1".into(),
        };
        let bytes = h.encode();
        assert_eq!(Hello::read_from(&mut &bytes[..]).unwrap().unwrap(), h);
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(Hello::read_from(&mut &bad[..]).unwrap().is_err());
        let mut huge = Writer::default();
        huge.put(&MAGIC);
        huge.put(&VERSION);
        huge.buf.extend_from_slice(&[0; NONCE]);
        huge.put(&u64::MAX);
        let e = Hello::read_from(&mut &huge.buf[..]).unwrap().unwrap_err();
        assert_eq!(e.what, "client label");
        assert!(Hello::read_from(&mut &bytes[..5]).is_err(), "short read");
        assert!(
            Hello::read_from(&mut &bytes[..30]).is_err(),
            "nonce cut short"
        );
    }

    #[test]
    fn challenges_and_accepts_read_back() {
        let c = encode_challenge(&[3; NONCE]);
        assert_eq!(
            read_answer(&mut &c[..]).unwrap(),
            Answer::Challenge([3; NONCE])
        );
        let a = encode_accept(STATUS_UNAUTHORIZED, "no", &[4; PROOF]);
        assert_eq!(
            read_answer(&mut &a[..]).unwrap(),
            Answer::Accept {
                status: STATUS_UNAUTHORIZED,
                message: "no".into(),
                proof: Some([4; PROOF]),
            }
        );
        assert!(
            read_answer(&mut &a[..a.len() - 1]).is_err(),
            "proof cut short"
        );
        // An accept from a server of another version has no proof.
        let mut old = Writer::default();
        old.put(&MAGIC);
        old.put(&1u32);
        old.put(&STATUS_VERSION);
        old.put_bytes(b"version");
        assert!(matches!(
            read_answer(&mut &old.buf[..]).unwrap(),
            Answer::Accept {
                status: STATUS_VERSION,
                proof: None,
                ..
            }
        ));
    }

    #[test]
    fn welcome_round_trips() {
        let w = Welcome {
            status: STATUS_OK,
            message: String::new(),
            driver_version: 13000,
            devices: vec![DeviceFacts {
                uuid: [7; 16],
                pci: [0, 0x10, 0],
            }],
        };
        assert_eq!(Welcome::decode(&w.encode()).unwrap(), w);
        assert!(Welcome::decode(&w.encode()[..10]).is_err());
    }

    #[test]
    fn frames_over_the_limit_are_refused_before_reading() {
        let mut b = Vec::new();
        b.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
        let mut buf = Vec::new();
        let e = read_frame(&mut &b[..], &mut buf).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        let mut ok = Vec::new();
        write_frame(&mut ok, b"hi").unwrap();
        read_frame(&mut &ok[..], &mut buf).unwrap();
        assert_eq!(buf, b"hi");
    }
}
