//! Node names: a fast hash and a table keyed by node name, which every `filter` and
//! `prioritize` looks thousands of names up in.

/// Multiplier of the word mixing (odd, bits spread: SplitMix64's).
const MIX: u64 = 0xbf58_476d_1ce4_e5b9;

/// How many names ahead a loop over a request's node names asks for their bytes
/// ([`prefetch_name`]): the names are thousands of separate allocations, freshly parsed and
/// not in cache, and reading each one cold cost as much as scoring its node.
pub const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to start loading the first bytes of `name` (a hint: no effect on results).
#[inline(always)]
pub fn prefetch_name(name: &str) {
    prefetch_bytes(name.as_ptr());
}

/// Asks the CPU to start loading the cache line at `p` (a hint: no effect on results).
#[inline(always)]
fn prefetch_bytes(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; nothing is read by the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The hash of one node name (the same for equal names, in every process): the name's length,
/// then its bytes eight at a time (the last word zero-padded), each word xored in, multiplied
/// and rotated; the top bits mixed down at the end. Node names come from the API server, not
/// from untrusted clients, so a keyed hash (std's SipHash) buys nothing here and cost a third
/// of a lookup; going through `std::hash::Hasher` cost a call per byte of the tail and one
/// for `str`'s terminator.
pub fn name_hash(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut h = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    let mut eat = |word: u64| h = (h ^ word).wrapping_mul(MIX).rotate_left(23);
    for c in &mut chunks {
        eat(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        eat(u64::from_le_bytes(last));
    }
    (h ^ (h >> 29)).wrapping_mul(MIX) ^ (h >> 32)
}

/// Node names with a value each, for looking thousands of names up per call. The names live
/// in one buffer and the entries in one vector, both in insertion order, so candidates listed
/// in that order (as kube-scheduler lists nodes) read memory front to back; the index is an
/// open-addressing table of entry numbers (4 bytes a slot, cache-resident for thousands of
/// nodes). A `HashMap<String, _>` puts every key in its own allocation, wherever the heap
/// was when it was inserted: a cache miss per lookup once the map was built amid parsing.
/// Entries are never removed (nodes that leave keep theirs until the table is rebuilt).
#[derive(Debug, Clone)]
pub struct NameTable<V> {
    text: String,
    entries: Vec<Entry<V>>,
    /// 0: free; otherwise an entry's index + 1. Length: a power of two, at least twice the
    /// number of entries.
    slots: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    hash: u64,
    at: usize,
    len: usize,
    value: V,
}

impl<V> Default for NameTable<V> {
    fn default() -> NameTable<V> {
        NameTable {
            text: String::new(),
            entries: Vec::new(),
            slots: Vec::new(),
        }
    }
}

impl<V> NameTable<V> {
    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no name.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slot where probing for `hash` starts (Fibonacci hashing: the product's top bits).
    fn home(&self, hash: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// The entry of `name` (whose [`name_hash`] is `hash`), or the free slot where it would go.
    fn find(&self, name: &str, hash: u64) -> Result<usize, usize> {
        if self.slots.is_empty() {
            return Err(0);
        }
        let mask = self.slots.len() - 1;
        let mut at = self.home(hash);
        loop {
            match self.slots[at] {
                0 => return Err(at),
                k => {
                    let e = &self.entries[k as usize - 1];
                    if e.hash == hash && &self.text[e.at..e.at + e.len] == name {
                        return Ok(k as usize - 1);
                    }
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// The value of `name`, whose [`name_hash`] the caller has already taken.
    pub fn get_hashed(&self, name: &str, hash: u64) -> Option<&V> {
        self.entry_hashed(name, hash).map(|(_, v)| v)
    }

    /// The index of `name`'s entry (see [`NameTable::name_at`]) and its value, `name`'s
    /// [`name_hash`] being `hash`.
    pub fn entry_hashed(&self, name: &str, hash: u64) -> Option<(usize, &V)> {
        self.find(name, hash)
            .ok()
            .map(|i| (i, &self.entries[i].value))
    }

    /// The name of entry `i` (from [`NameTable::entry_hashed`]), from the table's own buffer:
    /// thousands of names read from one place rather than from as many allocations.
    pub fn name_at(&self, i: usize) -> Option<&str> {
        let e = self.entries.get(i)?;
        Some(&self.text[e.at..e.at + e.len])
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.get_hashed(name, name_hash(name))
    }

    /// The value of `name`, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        let i = self.find(name, name_hash(name)).ok()?;
        Some(&mut self.entries[i].value)
    }

    /// Sets the value of `name`; the value it had, if any.
    pub fn insert(&mut self, name: &str, value: V) -> Option<V> {
        let hash = name_hash(name);
        match self.find(name, hash) {
            Ok(i) => return Some(std::mem::replace(&mut self.entries[i].value, value)),
            Err(free) => {
                let at = self.text.len();
                self.text.push_str(name);
                self.entries.push(Entry {
                    hash,
                    at,
                    len: name.len(),
                    value,
                });
                if self.entries.len() * 2 > self.slots.len() {
                    self.reindex();
                } else {
                    self.slots[free] = self.entries.len() as u32;
                }
            }
        }
        None
    }

    /// Rebuilds the index at twice the size the entries need (at least 16 slots).
    fn reindex(&mut self) {
        let size = (self.entries.len() * 2).next_power_of_two().max(16) * 2;
        self.slots = vec![0; size];
        let mask = size - 1;
        for i in 0..self.entries.len() {
            let mut at = self.home(self.entries[i].hash);
            while self.slots[at] != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = i as u32 + 1;
        }
    }

    /// Every name and its value, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.entries
            .iter()
            .map(|e| (&self.text[e.at..e.at + e.len], &e.value))
    }

    /// Every value, to change, in insertion order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|e| &mut e.value)
    }
}

#[cfg(test)]
mod entry_tests {
    use super::*;

    #[test]
    fn entries_give_back_their_names() {
        let mut t = NameTable::default();
        for (i, n) in ["node-a", "node-b", "x"].iter().enumerate() {
            t.insert(n, i);
        }
        let (i, v) = t.entry_hashed("node-b", name_hash("node-b")).unwrap();
        assert_eq!((t.name_at(i), *v), (Some("node-b"), 1));
        assert!(t.entry_hashed("node-c", name_hash("node-c")).is_none());
        assert_eq!(t.name_at(99), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_hash_equal_and_near_names_apart() {
        assert_eq!(name_hash("node-00001"), name_hash("node-00001"));
        let mut seen = std::collections::HashSet::new();
        for n in 0..20_000 {
            assert!(
                seen.insert(name_hash(&format!("node-{n:05}"))),
                "collision at {n}"
            );
            assert!(seen.insert(name_hash(&format!("gpu-worker-{n}.example.com"))));
        }
        // The padding of the last word is told apart by the length.
        assert_ne!(name_hash("a"), name_hash("a\0"));
        assert_ne!(name_hash(""), name_hash("\0"));
        assert_ne!(name_hash("abcdefgh"), name_hash("abcdefgh\0"));
    }

    #[test]
    fn name_table_finds_what_was_inserted_and_nothing_else() {
        let mut t: NameTable<usize> = NameTable::default();
        assert_eq!(t.get("x"), None);
        for n in 0..5_000 {
            assert_eq!(t.insert(&format!("node-{n}"), n), None);
        }
        assert_eq!(t.insert("node-7", 70), Some(7));
        assert_eq!(t.len(), 5_000);
        for n in 0..5_000 {
            let want = if n == 7 { 70 } else { n };
            assert_eq!(t.get(&format!("node-{n}")), Some(&want), "node-{n}");
        }
        for miss in ["node-5000", "node-", "", "node-00", "Node-1"] {
            assert_eq!(t.get(miss), None, "{miss}");
        }
        // Names whose hashes are equal but whose text is not are told apart by the text.
        let mut t: NameTable<u8> = NameTable::default();
        t.entries.push(Entry {
            hash: name_hash("b"),
            at: 0,
            len: 0,
            value: 9,
        });
        t.reindex();
        assert_eq!(t.get("b"), None);
        assert_eq!(t.insert("b", 1), None);
        assert_eq!(t.get("b"), Some(&1));
        let order: Vec<&str> = t.iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["", "b"]);
        *t.get_mut("b").unwrap() = 2;
        assert_eq!(t.values_mut().map(|v| *v).collect::<Vec<_>>(), [9, 2]);
    }
}
