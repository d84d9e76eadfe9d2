//! The other tenants of a card, as one tenant sees them: their card files read with `pread`
//! into private copies (never mapped, never locked), and the node agent's grants.
//!
//! Any file content is survivable: a file of the wrong size, with a wrong magic, a symlink, a
//! fifo or a folder in a tenant's folder is skipped; a file truncated while being read gives
//! a short read and is skipped. Which tenants there are is read again every [`SCAN_NS`].

use crate::card_file::{tenant_key, CardFileCopy, EntryCopy, CARD_MAGIC};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// How often the card folder is listed again (new and gone tenants, the grants).
pub const SCAN_NS: u64 = 200_000_000;
/// Other tenants read at most (the rest are ignored).
pub const MAX_PEERS: usize = 256;
/// Largest grants file read.
const MAX_GRANTS_BYTES: usize = 256 << 10;

/// What the node agent grants a tenant on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Guaranteed share (percent).
    pub request: u32,
    /// Cap (percent).
    pub limit: u32,
    /// Low priority.
    pub low: bool,
}

/// Grants by tenant folder name.
pub type Grants = HashMap<String, Grant>;

/// The grants file of card `uuid` in a card folder: `<card_dir>/<uuid>.grants`.
pub fn grants_path(card_dir: &Path, uuid: &str) -> std::path::PathBuf {
    card_dir.join(format!("{uuid}.grants"))
}

/// The grants file's text: a line per tenant, `<folder> <request> <limit> <high|low>`.
pub fn grants_text(grants: &[(String, Grant)]) -> String {
    let mut t = String::from("# written by gpupool node: tenant request limit priority\n");
    for (name, g) in grants {
        let priority = if g.low { "low" } else { "high" };
        t += &format!("{name} {} {} {priority}\n", g.request, g.limit);
    }
    t
}

/// Reads a grants file's text; lines that do not parse are skipped (a tenant without a grant
/// then counts for nothing).
pub fn parse_grants(text: &str) -> Grants {
    let mut out = Grants::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [name, request, limit, priority] = parts[..] else {
            continue;
        };
        let (Ok(request), Ok(limit)) = (request.parse::<u32>(), limit.parse::<u32>()) else {
            continue;
        };
        let low = match priority {
            "low" => true,
            "high" => false,
            _ => continue,
        };
        out.insert(
            name.to_string(),
            Grant {
                request: request.min(100),
                limit: limit.min(100),
                low,
            },
        );
    }
    out
}

/// One other tenant's file for the card.
struct PeerFile {
    name: String,
    key: u64,
    file: File,
    /// Its live entries as last read.
    entries: Vec<EntryCopy>,
}

/// The other tenants of one card.
#[derive(Default)]
pub(crate) struct Peers {
    files: Vec<PeerFile>,
    /// `None` where the node publishes no grants for the card.
    grants: Option<Grants>,
    next_scan_ns: u64,
}

fn open_read_only(path: &Path) -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    file.metadata().ok()?.file_type().is_file().then_some(file)
}

/// A file's entries, or `None` when it is not a whole card file now.
fn read_entries(file: &File) -> Option<Vec<EntryCopy>> {
    let size = std::mem::size_of::<CardFileCopy>();
    if file.metadata().ok()?.len() != size as u64 {
        return None;
    }
    let mut buf = vec![0u8; size];
    let mut at = 0;
    while at < size {
        match file.read_at(&mut buf[at..], at as u64) {
            Ok(0) => return None,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    // SAFETY: `buf` holds `size` bytes; every field of the copy is an integer, so any bytes are
    // a valid value; the read is unaligned.
    let copy: CardFileCopy = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
    (copy.magic == CARD_MAGIC).then(|| copy.entries.to_vec())
}

impl Peers {
    /// Lists the card folder when due, then reads every other tenant's file.
    pub fn refresh(&mut self, card_dir: &Path, own: &str, uuid: &str, now_ns: u64) {
        if now_ns >= self.next_scan_ns {
            self.scan(card_dir, own, uuid);
            self.next_scan_ns = now_ns.saturating_add(SCAN_NS);
        }
        for p in &mut self.files {
            p.entries = read_entries(&p.file)
                .map(|es| es.into_iter().filter(|e| e.live(now_ns)).collect())
                .unwrap_or_default();
        }
    }

    fn scan(&mut self, card_dir: &Path, own: &str, uuid: &str) {
        self.grants = read_grants(card_dir, uuid);
        let Ok(list) = std::fs::read_dir(card_dir) else {
            self.files.clear();
            return;
        };
        let mut files = Vec::new();
        for item in list.flatten().take(4 * MAX_PEERS) {
            if files.len() >= MAX_PEERS {
                break;
            }
            // Folders only (not followed through symlinks), named as tenants are.
            if !item.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(name) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name == own || name.starts_with('.') {
                continue;
            }
            if let Some(file) = open_read_only(&item.path().join(uuid)) {
                files.push(PeerFile {
                    key: tenant_key(&name),
                    name,
                    file,
                    entries: Vec::new(),
                });
            }
        }
        self.files = files;
    }

    /// The grants as last read.
    pub fn grants(&self) -> Option<&Grants> {
        self.grants.as_ref()
    }

    /// Every other tenant's live entries as last read: (folder, key, entry).
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64, EntryCopy)> + '_ {
        self.files
            .iter()
            .flat_map(|p| p.entries.iter().map(move |e| (p.name.as_str(), p.key, *e)))
    }
}

/// The card's grants file, if the node publishes one. One that exists but cannot be read
/// grants nothing (closed, not open).
fn read_grants(card_dir: &Path, uuid: &str) -> Option<Grants> {
    let path = grants_path(card_dir, uuid);
    match crate::untrusted::read_small_file(&path, MAX_GRANTS_BYTES) {
        Ok(bytes) => Some(parse_grants(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some(Grants::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_round_trip_and_bad_lines_are_skipped() {
        let grants = vec![
            (
                "k8s-a-main".to_string(),
                Grant {
                    request: 30,
                    limit: 60,
                    low: false,
                },
            ),
            (
                "k8s-b-main".to_string(),
                Grant {
                    request: 10,
                    limit: 100,
                    low: true,
                },
            ),
        ];
        let text = grants_text(&grants);
        let parsed = parse_grants(&text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["k8s-a-main"], grants[0].1);
        assert_eq!(parsed["k8s-b-main"], grants[1].1);
        let parsed = parse_grants("x 1 2\ny a 2 high\nz 1 2 medium\nw 500 900 high # capped\n");
        assert_eq!(parsed.len(), 1, "{parsed:?}");
        assert_eq!(
            parsed["w"],
            Grant {
                request: 100,
                limit: 100,
                low: false
            }
        );
    }
}
