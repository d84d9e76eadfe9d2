//! The connection to the GPU server: set up by `cuInit` from the environment, shared by every
//! thread. Calls without an observable result are appended to a batch; a synchronous call sends
//! the batch and itself in one write and waits for its reply, which carries the first error of
//! the batched calls. A lost connection makes every later call fail, said once on stderr.

use gpupool_cuda::cu::{CUdevice, CUfunction, CUkernel};
use gpupool_cuda::export_tables::DeviceFacts;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use gpupool_remote::handshake::{self, ClientError};
use gpupool_remote::listener::Address;
use gpupool_remote::polling::{read_polling, spin_from_env};
use gpupool_remote::protocol::*;
use gpupool_remote::wire::{DecodeError, Reader, Writer};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A kept answer to a `cached` call: its results, or the invalid-value error it gave.
type CachedAnswer = Result<Vec<u8>, u32>;

/// `CUDA_ERROR_DEVICE_UNAVAILABLE`: the answer to every call once the server is gone.
pub const CUDA_ERROR_DEVICE_UNAVAILABLE: u32 = 46;
/// `CUDA_ERROR_NOT_PERMITTED`: the server refused the token.
pub const CUDA_ERROR_NOT_PERMITTED: u32 = 800;
/// Variable naming the server.
pub const ENV_ADDRESS: &str = "GPUPOOL_REMOTE";
/// Variable holding the token.
pub const ENV_TOKEN: &str = "GPUPOOL_REMOTE_TOKEN";
/// Variable naming a file holding the token.
pub const ENV_TOKEN_FILE: &str = "GPUPOOL_REMOTE_TOKEN_FILE";
/// Variable naming the CA (PEM) a `tls://` server's certificate must come from.
pub const ENV_TLS_CA: &str = "GPUPOOL_REMOTE_TLS_CA";
/// The certificate (PEM) this client presents to a `tls://` server that asks for one.
pub const ENV_TLS_CERT: &str = "GPUPOOL_REMOTE_TLS_CERT";
/// The private key (PEM) of [`ENV_TLS_CERT`].
pub const ENV_TLS_KEY: &str = "GPUPOOL_REMOTE_TLS_KEY";

/// The alert of a TLS server that refused the client's certificate (or its lack of one).
fn certificate_refused(e: &io::Error) -> Option<rustls::AlertDescription> {
    use rustls::AlertDescription as A;
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(
            a @ (A::CertificateRequired
            | A::UnknownCA
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::AccessDenied),
        ) => Some(*a),
        _ => None,
    }
}

/// The TLS configuration of this client: servers' certificates checked against `ca`; the
/// client's own certificate and key when both variables name one.
fn tls_client_config(ca: &std::path::Path) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let (cert, key) = (var(ENV_TLS_CERT), var(ENV_TLS_KEY));
    let identity = match (&cert, &key) {
        (Some(c), Some(k)) => Some(((c.as_ref(), ENV_TLS_CERT), (k.as_ref(), ENV_TLS_KEY))),
        (None, None) => None,
        _ => {
            return Err(format!(
                "{ENV_TLS_CERT} and {ENV_TLS_KEY} go together: set both or neither"
            ))
        }
    };
    gpupool_remote::tls::client_config((ca, ENV_TLS_CA), identity)
}
/// How long the TLS and gpupool handshakes may take.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// A batch is sent once it holds this many bytes.
const BATCH_LIMIT: usize = 1 << 20;
/// Calls sent without waiting between two acknowledgements. The server runs a tenant's
/// launches at the pace its compute limit allows; without this bound a program that never
/// synchronises would queue launches in the connection faster than they can run, and its
/// next synchronisation would wait for all of them. At most two windows are outstanding.
pub const ACK_WINDOW: u32 = 128;

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS during the handshake; then the plaintext end of the relay (`Unix`).
    Tls(Box<(rustls::ClientConnection, TcpStream)>),
}

/// How long a read polls before it blocks (ns), set from the environment at connection.
static SPIN_NS: AtomicU64 = AtomicU64::new(0);

/// Whether the server is reached over a network (`tcp://`, `tls://`), where sending an
/// image's hash instead of the image pays.
static OVER_NETWORK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the server is reached over a network rather than a Unix socket.
pub fn over_network() -> bool {
    OVER_NETWORK.load(Relaxed)
}

impl Read for Socket {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let mut spin = Duration::from_nanos(SPIN_NS.load(Relaxed));
        match self {
            Socket::Tcp(s) => read_polling(s, b, &mut spin),
            Socket::Unix(s) => read_polling(s, b, &mut spin),
            Socket::Tls(t) => rustls::Stream::new(&mut t.0, &mut t.1).read(b),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(b),
            Socket::Unix(s) => s.write(b),
            Socket::Tls(t) => {
                let mut stream = rustls::Stream::new(&mut t.0, &mut t.1);
                let n = stream.write(b)?;
                stream.flush()?;
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the client knows about its server.
pub struct State {
    socket: Option<Socket>,
    /// Requests not sent yet.
    pub batch: Writer,
    /// `cuInit`'s answer once tried (`None`: not yet).
    init: Option<u32>,
    /// Why the connection is unusable, said once.
    broken: Option<String>,
    address: String,
    /// `cuDriverGetVersion` of the server.
    pub driver_version: i32,
    /// The server's devices.
    pub devices: Vec<DeviceFacts>,
    reply: Vec<u8>,
    /// A launch ran since managed mirrors were last refreshed.
    pub kernels_may_have_written: bool,
    /// Results of `cached` calls by call number and argument bytes.
    cache: Option<HashMap<Vec<u8>, CachedAnswer>>,
    /// The last reply's own result (before any deferred error of batched calls).
    last_result: u32,
    /// Calls sent without waiting since the last acknowledgement was asked for.
    unacked: u32,
    /// Whether an acknowledgement was asked for and its reply not read yet.
    ack_pending: bool,
}

/// The client's state, held.
pub type StateGuard = MutexGuard<'static, State>;

static STATE: Mutex<State> = Mutex::new(State {
    socket: None,
    batch: Writer { buf: Vec::new() },
    init: None,
    broken: None,
    address: String::new(),
    driver_version: 0,
    devices: Vec::new(),
    reply: Vec::new(),
    kernels_may_have_written: false,
    cache: None,
    last_result: CUDA_SUCCESS,
    unacked: 0,
    ack_pending: false,
});

/// The shared state, locked (a panic elsewhere never poisons it for good).
pub fn state() -> StateGuard {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A synchronous call in the current context: `args` writes its arguments, `outs` reads the
/// reply's values when it succeeded.
pub fn call_sync(
    call: u16,
    args: impl FnOnce(&mut Writer),
    outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
) -> u32 {
    let mut s = state();
    let start = match s.begin(call, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    args(&mut s.batch);
    s.finish_sync(start, outs)
}

fn say(msg: &str) {
    eprintln!("gpupool remote GPU: {msg}");
}

fn token() -> Result<Vec<u8>, String> {
    if let Some(t) = std::env::var_os(ENV_TOKEN) {
        return Ok(t.into_encoded_bytes());
    }
    if let Some(f) = std::env::var_os(ENV_TOKEN_FILE) {
        return std::fs::read_to_string(&f)
            .map(|t| t.trim().as_bytes().to_vec())
            .map_err(|e| format!("{ENV_TOKEN_FILE}={}: {e}", f.to_string_lossy()));
    }
    Ok(Vec::new())
}

fn client_label() -> String {
    let mut host = [0u8; 256];
    // SAFETY: gethostname writes at most len bytes.
    unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len() - 1) };
    let end = host.iter().position(|&b| b == 0).unwrap_or(0);
    format!(
        "{} pid {}",
        String::from_utf8_lossy(&host[..end]),
        std::process::id()
    )
}

impl State {
    /// Connects and shakes hands (once); returns `cuInit`'s answer.
    pub fn init(&mut self) -> u32 {
        if let Some(rc) = self.init {
            return rc;
        }
        let rc = match self.connect() {
            Ok(()) => CUDA_SUCCESS,
            Err((rc, msg)) => {
                say(&msg);
                rc
            }
        };
        self.init = Some(rc);
        rc
    }

    fn connect(&mut self) -> Result<(), (u32, String)> {
        let no_device = |m: String| (CUDA_ERROR_NO_DEVICE, m);
        let Ok(addr) = std::env::var(ENV_ADDRESS) else {
            return Err(no_device(format!(
                "{ENV_ADDRESS} is not set: name the GPU server (tcp://HOST:PORT, tls://HOST:PORT or unix:PATH)"
            )));
        };
        let parsed = Address::parse(&addr).map_err(|e| no_device(format!("{ENV_ADDRESS}={e}")))?;
        self.address = parsed.to_string();
        let token = token().map_err(no_device)?;
        let spin = spin_from_env().map_err(no_device)?;
        // Over TLS the answer comes through the relay thread, which polling would only take
        // CPU time from.
        let spin = if matches!(parsed, Address::Tls(_)) {
            Duration::ZERO
        } else {
            spin
        };
        SPIN_NS.store(spin.as_nanos() as u64, Relaxed);
        OVER_NETWORK.store(!matches!(parsed, Address::Unix(_)), Relaxed);
        let cannot = |e: io::Error| no_device(format!("cannot reach the GPU server {addr}: {e}"));
        let mut sock = match &parsed {
            Address::Tcp(a) => {
                let s = TcpStream::connect(a).map_err(cannot)?;
                let _ = s.set_nodelay(true);
                Socket::Tcp(s)
            }
            Address::Unix(p) => Socket::Unix(UnixStream::connect(p).map_err(cannot)?),
            Address::Tls(a) => {
                let Some(ca) = std::env::var_os(ENV_TLS_CA) else {
                    return Err(no_device(format!(
                        "{ENV_TLS_CA} is not set: a tls:// server's certificate is checked against a CA (PEM file)"
                    )));
                };
                let config = tls_client_config(ca.as_ref()).map_err(no_device)?;
                let mut conn = gpupool_remote::tls::client_connection(config, a)
                    .map_err(|e| no_device(format!("{ENV_ADDRESS}={addr}: {e}")))?;
                let mut s = TcpStream::connect(a).map_err(cannot)?;
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(HANDSHAKE_DEADLINE));
                gpupool_remote::tls::complete_handshake(&mut conn, &mut s).map_err(|e| {
                    no_device(format!("TLS with the GPU server {addr} failed: {e}"))
                })?;
                Socket::Tls(Box::new((conn, s)))
            }
        };
        match handshake::client_side(&mut sock, &token, &client_label()) {
            Ok(()) => {}
            Err(ClientError::Io(e)) => {
                if let Some(alert) = certificate_refused(&e) {
                    return Err((
                        CUDA_ERROR_NOT_PERMITTED,
                        format!(
                            "the GPU server {addr} refused this client's TLS certificate ({alert:?}): it admits only clients presenting a certificate its client CA issued ({ENV_TLS_CERT} and {ENV_TLS_KEY}, or gpupool run --tls-cert and --tls-key)"
                        ),
                    ));
                }
                return Err(no_device(format!("cannot reach the GPU server {addr}: {e}")));
            }
            Err(ClientError::Refused(STATUS_UNAUTHORIZED, msg)) => {
                return Err((
                    CUDA_ERROR_NOT_PERMITTED,
                    format!("the GPU server {addr} refused this client: {msg}"),
                ))
            }
            Err(ClientError::Refused(_, msg)) => {
                return Err(no_device(format!(
                    "the GPU server {addr} refused this client: {msg}"
                )))
            }
            Err(ClientError::ServerUnproven) => {
                return Err((
                    CUDA_ERROR_NOT_PERMITTED,
                    format!(
                        "the GPU server {addr} accepted this client without proving it knows its token: not using it"
                    ),
                ))
            }
        }
        if let Socket::Tls(t) = sock {
            let (conn, tcp) = *t;
            let _ = tcp.set_read_timeout(None);
            sock =
                Socket::Unix(gpupool_remote::tls::start_relay(conn.into(), tcp).map_err(cannot)?);
        }
        let mut body = Vec::new();
        read_frame(&mut sock, &mut body).map_err(cannot)?;
        let welcome = Welcome::decode(&body)
            .map_err(|e| no_device(format!("the GPU server {addr} sent a bad welcome: {e}")))?;
        if welcome.status != STATUS_OK {
            return Err(no_device(format!(
                "the GPU server {addr} cannot serve: {}",
                welcome.message
            )));
        }
        self.driver_version = welcome.driver_version;
        self.devices = welcome.devices;
        self.socket = Some(sock);
        Ok(())
    }

    /// In a forked child: the parent's connection is closed here (not for the parent) and,
    /// if the parent had connected, every call answers `CUDA_ERROR_NOT_INITIALIZED`. Whether
    /// it had.
    pub fn forget_connection_after_fork(&mut self) -> bool {
        if self.init.is_none() {
            return false;
        }
        self.socket = None;
        self.batch.buf.clear();
        self.unacked = 0;
        self.init = Some(CUDA_ERROR_NOT_INITIALIZED);
        true
    }

    /// Whether `cuInit` succeeded; else the error every call answers.
    pub fn ready(&self) -> Result<(), u32> {
        match self.init {
            None => Err(CUDA_ERROR_NOT_INITIALIZED),
            Some(CUDA_SUCCESS) if self.broken.is_none() => Ok(()),
            Some(CUDA_SUCCESS) => Err(CUDA_ERROR_DEVICE_UNAVAILABLE),
            Some(rc) => Err(rc),
        }
    }

    fn break_with(&mut self, why: String) -> u32 {
        if self.broken.is_none() {
            say(&format!(
                "lost the GPU server {}: {why}; every CUDA call now fails with CUDA_ERROR_DEVICE_UNAVAILABLE",
                self.address
            ));
            self.broken = Some(why);
            self.socket = None;
        }
        CUDA_ERROR_DEVICE_UNAVAILABLE
    }

    /// Starts a request in the batch; returns where it starts.
    pub fn begin(&mut self, call: u16, sync: bool, context: u64) -> Result<usize, u32> {
        self.ready()?;
        crate::local_answers::sent(call);
        let head = RequestHead {
            call,
            flags: if sync { FLAG_SYNC } else { 0 },
            context,
        };
        Ok(start_request(&mut self.batch, head))
    }

    /// Sends the batch.
    pub fn flush(&mut self) -> Result<(), u32> {
        if self.batch.buf.is_empty() {
            return Ok(());
        }
        let Some(sock) = self.socket.as_mut() else {
            return Err(CUDA_ERROR_DEVICE_UNAVAILABLE);
        };
        let r = sock.write_all(&self.batch.buf);
        self.batch.buf.clear();
        r.map_err(|e| self.break_with(format!("sending failed ({e})")))
    }

    /// Ends an asynchronous request begun at `start` whose last argument is `payload` (as
    /// `put_bytes` writes it), sending the batch and then the payload straight from the
    /// caller's memory: bulk data is not copied into the batch.
    pub fn finish_async_with(&mut self, start: usize, payload: &[u8]) -> u32 {
        self.batch.put(&(payload.len() as u64));
        let len = (self.batch.buf.len() - start - 4 + payload.len()) as u32;
        self.batch.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        let Some(sock) = self.socket.as_mut() else {
            return CUDA_ERROR_DEVICE_UNAVAILABLE;
        };
        let r = sock
            .write_all(&self.batch.buf)
            .and_then(|_| sock.write_all(payload));
        self.batch.buf.clear();
        match r {
            Ok(()) => self.sent_without_waiting(),
            Err(e) => self.break_with(format!("sending failed ({e})")),
        }
    }

    /// Ends an asynchronous request begun at `start`.
    pub fn finish_async(&mut self, start: usize) -> u32 {
        crate::call_stats::count(call_of(&self.batch, start), false);
        finish_request(&mut self.batch, start);
        if self.batch.buf.len() >= BATCH_LIMIT {
            if let Err(e) = self.flush() {
                return e;
            }
        }
        self.sent_without_waiting()
    }

    /// Counts a call sent without waiting; after [`ACK_WINDOW`] of them, waits for the
    /// previous acknowledgement (the server has run everything before it) and asks for the
    /// next one.
    fn sent_without_waiting(&mut self) -> u32 {
        self.unacked += 1;
        if self.unacked < ACK_WINDOW {
            return CUDA_SUCCESS;
        }
        self.unacked = 0;
        if let Err(e) = self.read_pending_ack() {
            return e;
        }
        let start = match self.begin(custom::ACK, true, 0) {
            Ok(s) => s,
            Err(e) => return e,
        };
        finish_request(&mut self.batch, start);
        if let Err(e) = self.flush() {
            return e;
        }
        self.ack_pending = true;
        CUDA_SUCCESS
    }

    /// Reads the reply to an outstanding acknowledgement, if any.
    fn read_pending_ack(&mut self) -> Result<(), u32> {
        if !std::mem::take(&mut self.ack_pending) {
            return Ok(());
        }
        match self.read_one_reply(|_| Ok(())) {
            CUDA_SUCCESS => Ok(()),
            rc => Err(rc),
        }
    }

    /// Reads the reply to the last request sent (after any outstanding acknowledgement); hands
    /// its results to `outs` when the call succeeded. Returns the deferred error of batched
    /// calls when there is one, else the call's result.
    pub fn read_reply(
        &mut self,
        outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
    ) -> u32 {
        if let Err(e) = self.read_pending_ack() {
            return e;
        }
        self.read_one_reply(outs)
    }

    fn read_one_reply(
        &mut self,
        outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
    ) -> u32 {
        let Some(sock) = self.socket.as_mut() else {
            return CUDA_ERROR_DEVICE_UNAVAILABLE;
        };
        let mut buf = std::mem::take(&mut self.reply);
        let read = read_frame(sock, &mut buf);
        let rc = match read {
            Ok(()) => self.parse_reply(&buf, outs),
            Err(e) => self.lost(e),
        };
        self.reply = buf;
        rc
    }

    /// Reads the reply to a call answering `len` bytes (as `put_bytes` writes them) straight
    /// into `dst`; any other reply (an error) is read as usual.
    ///
    /// # Safety
    /// `dst` is writable for `len` bytes.
    pub unsafe fn read_reply_into(&mut self, dst: *mut u8, len: usize) -> u32 {
        if let Err(e) = self.read_pending_ack() {
            return e;
        }
        let Some(sock) = self.socket.as_mut() else {
            return CUDA_ERROR_DEVICE_UNAVAILABLE;
        };
        // Frame length, result, deferred error.
        let mut head = [0u8; 12];
        if let Err(e) = sock.read_exact(&mut head) {
            return self.lost(e);
        }
        let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap());
        let (n, rc, deferred) = (word(0) as usize, word(4), word(8));
        if !(8..=MAX_FRAME).contains(&n) {
            return self.break_with(format!("bad reply: a frame of {n} bytes"));
        }
        if rc == CUDA_SUCCESS && n == 16 + len {
            let mut data_len = [0u8; 8];
            // SAFETY: the caller's buffer of len bytes.
            let data = unsafe { std::slice::from_raw_parts_mut(dst, len) };
            let read = sock
                .read_exact(&mut data_len)
                .and_then(|_| sock.read_exact(data));
            if let Err(e) = read {
                return self.lost(e);
            }
            if u64::from_le_bytes(data_len) != len as u64 {
                return self.break_with("bad reply: wrong data length".into());
            }
            return if deferred != CUDA_SUCCESS {
                deferred
            } else {
                rc
            };
        }
        let mut buf = std::mem::take(&mut self.reply);
        buf.clear();
        buf.extend_from_slice(&head[4..]);
        let read = sock.take((n - 8) as u64).read_to_end(&mut buf);
        let rc = match read {
            Ok(_) if buf.len() == n => self.parse_reply(&buf, |_| Ok(())),
            Ok(_) => self.lost(io::ErrorKind::UnexpectedEof.into()),
            Err(e) => self.lost(e),
        };
        self.reply = buf;
        rc
    }

    /// Marks the connection lost after a failed read.
    fn lost(&mut self, e: io::Error) -> u32 {
        let why = if e.kind() == io::ErrorKind::UnexpectedEof {
            "the server closed the connection (restarted or stopped?)".to_string()
        } else {
            format!("receiving failed ({e})")
        };
        self.break_with(why)
    }

    /// Answers a reply's body: the deferred error when there is one, else the call's result
    /// (its results handed to `outs` when it succeeded).
    fn parse_reply(
        &mut self,
        body: &[u8],
        outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
    ) -> u32 {
        let mut r = Reader::new(body);
        let parsed = (|| -> Result<u32, String> {
            let rc: u32 = r.get("result").map_err(|e| e.to_string())?;
            let deferred: u32 = r.get("deferred").map_err(|e| e.to_string())?;
            if rc == REFUSED {
                let why = r.get_bytes("reason").map_err(|e| e.to_string())?;
                return Err(format!(
                    "the server refused a message: {}",
                    String::from_utf8_lossy(why)
                ));
            }
            if rc == CUDA_SUCCESS {
                outs(&mut r).map_err(|e| format!("bad reply: {e}"))?;
            }
            self.last_result = rc;
            Ok(if deferred != CUDA_SUCCESS {
                deferred
            } else {
                rc
            })
        })();
        match parsed {
            Ok(rc) => rc,
            Err(why) => self.break_with(why),
        }
    }

    /// Ends a request begun at `start` whose results never change for the same arguments
    /// (device and function attributes, occupancy): answered from the cache when asked before.
    pub fn finish_cached(
        &mut self,
        start: usize,
        outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
    ) -> u32 {
        // The key: call number and arguments (not the context, which does not change them).
        let mut key = self.batch.buf[start + 4..start + 6].to_vec();
        key.extend_from_slice(&self.batch.buf[start + 4 + REQUEST_HEAD..]);
        match self.cache.as_ref().and_then(|c| c.get(&key)) {
            Some(Ok(hit)) => {
                self.batch.buf.truncate(start);
                let mut r = Reader::new(hit);
                return match outs(&mut r) {
                    Ok(()) => CUDA_SUCCESS,
                    Err(_) => CUDA_ERROR_UNKNOWN,
                };
            }
            Some(Err(e)) => {
                self.batch.buf.truncate(start);
                return *e;
            }
            None => {}
        }
        let mut answer = None;
        self.last_result = u32::MAX;
        let rc = self.finish_sync(start, |r| {
            answer = Some(r.rest().to_vec());
            outs(r)
        });
        // An answer, or an invalid value for these arguments (an attribute the server's
        // driver does not know, asked again at every launch), stays the same.
        let kept = match (rc, answer) {
            (CUDA_SUCCESS, Some(a)) => Some(Ok(a)),
            _ if self.last_result == CUDA_ERROR_INVALID_VALUE => {
                Some(Err(CUDA_ERROR_INVALID_VALUE))
            }
            _ => None,
        };
        if let Some(k) = kept {
            self.cache.get_or_insert_with(HashMap::new).insert(key, k);
        }
        rc
    }

    /// Forgets the cached answers an attribute change on `handle` may have made stale: those
    /// of calls `about_handle` whose arguments hold the handle, and every answer of calls
    /// `about_any` (queries about the other handle kind, which the change reaches through
    /// handles the client does not link: a kernel's functions, a function's kernel).
    pub fn forget_cached_after_set(
        &mut self,
        handle: u64,
        about_handle: &[u16],
        about_any: &[u16],
    ) {
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        let pattern = handle.to_le_bytes();
        cache.retain(|key, _| {
            let call = u16::from_le_bytes([key[0], key[1]]);
            let holds = || key[2..].windows(8).any(|w| w == pattern);
            !(about_any.contains(&call) || (about_handle.contains(&call) && holds()))
        });
    }

    /// Ends a synchronous request begun at `start`, sends the batch and waits for the reply.
    pub fn finish_sync(
        &mut self,
        start: usize,
        outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
    ) -> u32 {
        crate::call_stats::count(call_of(&self.batch, start), true);
        finish_request(&mut self.batch, start);
        if let Err(e) = self.flush() {
            return e;
        }
        self.read_reply(outs)
    }
}

/// The call number of the request begun at `start` in `batch`.
fn call_of(batch: &Writer, start: usize) -> u16 {
    batch
        .buf
        .get(start + 4..start + 6)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

/// Cached queries about a function (`cuFuncGetAttribute` and the occupancy queries), whose
/// answers an attribute change may alter.
const FUNCTION_QUERIES: [u16; 5] = [121, 124, 125, 132, custom::OCCUPANCY_CLUSTERS];
/// Cached queries about a kernel (`cuKernelGetAttribute`).
const KERNEL_QUERIES: [u16; 1] = [128];

/// Hook after `cuFuncSetAttribute`: the function's cached answers and kernel attributes may be
/// stale.
pub fn forget_cached_for_function(f: CUfunction, _attrib: i32, _v: i32) {
    state().forget_cached_after_set(f as usize as u64, &FUNCTION_QUERIES, &KERNEL_QUERIES);
}

/// Hook after `cuKernelSetAttribute`: the kernel's cached attributes and function answers may
/// be stale.
pub fn forget_cached_for_kernel(_attrib: i32, _v: i32, k: CUkernel, _dev: CUdevice) {
    state().forget_cached_after_set(k as usize as u64, &KERNEL_QUERIES, &FUNCTION_QUERIES);
}

/// Sends what is batched (at exit, so queued work is not lost).
pub fn flush_at_exit() {
    if let Ok(mut s) = STATE.try_lock() {
        let _ = s.flush();
    }
    crate::call_stats::print_at_exit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(sock: UnixStream) -> State {
        State {
            socket: Some(Socket::Unix(sock)),
            batch: Writer::default(),
            init: Some(CUDA_SUCCESS),
            broken: None,
            address: "test".into(),
            driver_version: 13000,
            devices: Vec::new(),
            reply: Vec::new(),
            kernels_may_have_written: false,
            cache: None,
            last_result: CUDA_SUCCESS,
            unacked: 0,
            ack_pending: false,
        }
    }

    fn ask(s: &mut State, attr: i32) -> (u32, i32) {
        let start = s.begin(20, true, 0).unwrap();
        s.batch.put(&1u8);
        s.batch.put(&attr);
        s.batch.put(&0i32);
        let mut v = 0;
        let rc = s.finish_cached(start, |r| {
            v = r.get("v")?;
            Ok(())
        });
        (rc, v)
    }

    /// A server answering attribute queries with `answer(attr)`: (result, deferred error);
    /// a successful answer is `attr * 10`. Its thread returns how many requests it served.
    fn attribute_server(answer: fn(i32) -> (u32, u32)) -> (State, std::thread::JoinHandle<u32>) {
        let (client, mut server) = UnixStream::pair().unwrap();
        let served = std::thread::spawn(move || {
            let mut n = 0;
            let mut buf = Vec::new();
            while read_frame(&mut server, &mut buf).is_ok() {
                n += 1;
                let attr = i32::from_le_bytes(buf[13..17].try_into().unwrap());
                let (rc, deferred) = answer(attr);
                let mut w = Writer::default();
                w.put(&rc);
                w.put(&deferred);
                if rc == CUDA_SUCCESS {
                    w.put(&(attr * 10));
                }
                write_frame(&mut server, &w.buf).unwrap();
            }
            n
        });
        (connected(client), served)
    }

    #[test]
    fn cached_calls_reach_the_server_once_per_argument_values() {
        let (mut s, served) = attribute_server(|_| (CUDA_SUCCESS, CUDA_SUCCESS));
        assert_eq!(ask(&mut s, 7), (CUDA_SUCCESS, 70));
        assert_eq!(ask(&mut s, 7), (CUDA_SUCCESS, 70));
        assert_eq!(ask(&mut s, 8), (CUDA_SUCCESS, 80));
        s.cache = None;
        assert_eq!(ask(&mut s, 7), (CUDA_SUCCESS, 70));
        assert!(
            s.batch.buf.is_empty(),
            "a cached answer leaves nothing to send"
        );
        drop(s);
        assert_eq!(
            served.join().unwrap(),
            3,
            "7, 8, and 7 again after forgetting"
        );
    }

    #[test]
    fn an_attribute_change_forgets_only_what_it_may_have_changed() {
        let (mut s, _served) = attribute_server(|_| (CUDA_SUCCESS, CUDA_SUCCESS));
        let key = |call: u16, handle: u64| {
            let mut k = call.to_le_bytes().to_vec();
            k.extend_from_slice(&8i32.to_le_bytes());
            k.extend_from_slice(&handle.to_le_bytes());
            k
        };
        let entries = [
            key(128, 0xa0),
            key(128, 0xb0),
            key(121, 0xa0),
            key(121, 0xf0),
            key(custom::OCCUPANCY_CLUSTERS, 0xa0),
            key(custom::OCCUPANCY_CLUSTERS, 0xf0),
            key(20, 0xa0),
        ];
        s.cache = Some(entries.iter().map(|k| (k.clone(), Ok(vec![1]))).collect());
        s.forget_cached_after_set(0xa0, &KERNEL_QUERIES, &FUNCTION_QUERIES);
        let mut left: Vec<_> = s.cache.as_ref().unwrap().keys().cloned().collect();
        left.sort();
        let mut want = vec![key(128, 0xb0), key(20, 0xa0)];
        want.sort();
        assert_eq!(
            left, want,
            "kernel 0xa0's attributes and every function answer (cluster occupancy too) go"
        );
        let cluster_f0 = key(custom::OCCUPANCY_CLUSTERS, 0xf0);
        s.cache
            .as_mut()
            .unwrap()
            .insert(cluster_f0.clone(), Ok(vec![1]));
        s.forget_cached_after_set(0xa0, &FUNCTION_QUERIES, &KERNEL_QUERIES);
        assert!(
            s.cache.as_ref().unwrap().contains_key(&cluster_f0),
            "another function's cluster occupancy stays"
        );
        s.cache.as_mut().unwrap().remove(&cluster_f0);
        s.forget_cached_after_set(0xb0, &FUNCTION_QUERIES, &KERNEL_QUERIES);
        assert_eq!(
            s.cache
                .as_ref()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            vec![key(20, 0xa0)],
            "a function change forgets every kernel attribute; device answers stay"
        );
    }

    #[test]
    fn an_invalid_value_is_kept_but_a_deferred_error_is_not() {
        // Attribute 16 is unknown; attribute 5 comes back with a batched call's error.
        let (mut s, served) = attribute_server(|attr| match attr {
            16 => (CUDA_ERROR_INVALID_VALUE, CUDA_SUCCESS),
            _ => (CUDA_SUCCESS, CUDA_ERROR_INVALID_VALUE),
        });
        assert_eq!(ask(&mut s, 16).0, CUDA_ERROR_INVALID_VALUE);
        assert_eq!(ask(&mut s, 16).0, CUDA_ERROR_INVALID_VALUE);
        assert_eq!(
            ask(&mut s, 5).0,
            CUDA_ERROR_INVALID_VALUE,
            "the deferred error"
        );
        assert_eq!(ask(&mut s, 5).0, CUDA_ERROR_INVALID_VALUE);
        drop(s);
        assert_eq!(
            served.join().unwrap(),
            3,
            "16 once; 5 twice, as its answer came with another call's error"
        );
    }

    #[test]
    fn a_lost_server_fails_every_later_call() {
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        let mut s = connected(client);
        assert_eq!(ask(&mut s, 1).0, CUDA_ERROR_DEVICE_UNAVAILABLE);
        assert_eq!(s.ready(), Err(CUDA_ERROR_DEVICE_UNAVAILABLE));
        assert_eq!(s.begin(20, true, 0), Err(CUDA_ERROR_DEVICE_UNAVAILABLE));
    }

    #[test]
    fn calls_sent_without_waiting_stay_within_two_windows_of_the_server() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        let (client, mut server) = UnixStream::pair().unwrap();
        let done = Arc::new(AtomicU32::new(0));
        let counted = done.clone();
        let served = std::thread::spawn(move || {
            let (mut asyncs, mut acks, mut held_back) = (0u32, 0u32, None);
            let mut buf = Vec::new();
            while read_frame(&mut server, &mut buf).is_ok() {
                let call = u16::from_le_bytes([buf[0], buf[1]]);
                if call != custom::ACK {
                    asyncs += 1;
                    continue;
                }
                assert_eq!(asyncs, (acks + 1) * ACK_WINDOW, "an ack after each window");
                acks += 1;
                if acks == 1 {
                    // Hold the first acknowledgement back: the client must stop.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    held_back = Some(counted.load(Ordering::SeqCst));
                }
                let mut w = Writer::default();
                w.put(&CUDA_SUCCESS);
                w.put(&CUDA_SUCCESS);
                // The client may be gone after the last one.
                let _ = write_frame(&mut server, &w.buf);
            }
            (acks, held_back)
        });
        let mut s = connected(client);
        for _ in 0..3 * ACK_WINDOW {
            let start = s.begin(LAUNCH_LIKE, false, 0).unwrap();
            assert_eq!(s.finish_async(start), CUDA_SUCCESS);
            done.fetch_add(1, Ordering::SeqCst);
        }
        drop(s);
        let (acks, held_back) = served.join().unwrap();
        assert_eq!(acks, 3);
        assert_eq!(
            held_back,
            Some(2 * ACK_WINDOW - 1),
            "without the first acknowledgement the client sends one more window, then waits"
        );
    }

    #[test]
    fn bulk_replies_land_in_the_caller_s_buffer_and_errors_are_read_whole() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let served = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for answer in [Some(vec![4u8; 1000]), None, Some(vec![5u8; 1000])] {
                read_frame(&mut server, &mut buf).unwrap();
                let mut w = Writer::default();
                match answer {
                    Some(data) => {
                        w.put(&CUDA_SUCCESS);
                        w.put(&CUDA_SUCCESS);
                        w.put_bytes(&data);
                    }
                    None => {
                        w.put(&CUDA_ERROR_INVALID_VALUE);
                        w.put(&CUDA_SUCCESS);
                    }
                }
                write_frame(&mut server, &w.buf).unwrap();
            }
        });
        let mut s = connected(client);
        let mut dst = vec![0u8; 1000];
        for want in [
            (CUDA_SUCCESS, 4u8),
            (CUDA_ERROR_INVALID_VALUE, 4),
            (CUDA_SUCCESS, 5),
        ] {
            let start = s.begin(custom::COPY_DTOH, true, 0).unwrap();
            finish_request(&mut s.batch, start);
            s.flush().unwrap();
            // SAFETY: dst holds 1000 bytes.
            let rc = unsafe { s.read_reply_into(dst.as_mut_ptr(), dst.len()) };
            assert_eq!(rc, want.0);
            assert!(dst.iter().all(|&b| b == want.1), "{:?}", &dst[..4]);
        }
        assert_eq!(s.ready(), Ok(()), "the connection is still usable");
        served.join().unwrap();
    }

    /// A call number standing for any call sent without waiting.
    const LAUNCH_LIKE: u16 = custom::LAUNCH;
}
