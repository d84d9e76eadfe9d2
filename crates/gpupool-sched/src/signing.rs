//! Assignments the scheduler wrote, told apart from ones a pod's author wrote: the extender signs
//! each assignment with a key it shares with the node agents (a Secret mounted into both), over
//! the pod's identity, its node and the annotation's exact text (HMAC-SHA256, annotation
//! `gpupool.io/assignment-signature`). A pod created with a forged assignment, or with another
//! pod's signed one, has no valid signature: the node agent refuses it and the extender does not
//! count it.

use ring::hmac;
use std::path::Path;
use thiserror::Error;

/// Pod annotation with the assignment's signature (hex).
pub const SIGNATURE_ANNOTATION: &str = "gpupool.io/assignment-signature";
/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// The shared signing key.
#[derive(Clone)]
pub struct AssignmentKey {
    key: hmac::Key,
    /// A digest of the key, to compare keys (configurations) without keeping the key twice.
    id: [u8; 32],
}

impl PartialEq for AssignmentKey {
    fn eq(&self, other: &AssignmentKey) -> bool {
        self.id == other.id
    }
}

impl std::fmt::Debug for AssignmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssignmentKey(..)")
    }
}

/// A key that cannot be used, or an assignment that does not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SigningError {
    /// The key file could not be read or is too short.
    #[error("assignment key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// No signature on the pod.
    #[error("its assignment is not signed by the gpupool scheduler (no {SIGNATURE_ANNOTATION}); was it scheduled by another scheduler, or written by hand?")]
    Unsigned,
    /// A signature that does not match.
    #[error("its assignment's signature does not match (written or copied by hand, or signed with another key)")]
    Mismatch,
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedFields<'a> {
    /// Pod namespace.
    pub namespace: &'a str,
    /// Pod name.
    pub name: &'a str,
    /// Pod UID (given by the API server at creation: no copy of a pod has the same).
    pub uid: &'a str,
    /// The node the assignment is for.
    pub node: &'a str,
    /// The assignment annotation's exact text.
    pub assignment: &'a str,
}

impl SignedFields<'_> {
    fn message(&self) -> Vec<u8> {
        let mut m = b"gpupool-assignment-v1".to_vec();
        for part in [
            self.namespace,
            self.name,
            self.uid,
            self.node,
            self.assignment,
        ] {
            m.extend_from_slice(&(part.len() as u64).to_le_bytes());
            m.extend_from_slice(part.as_bytes());
        }
        m
    }
}

impl AssignmentKey {
    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: &[u8]) -> Result<AssignmentKey, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "{} bytes; at least {MIN_KEY_BYTES} are needed (e.g. `head -c 32 /dev/urandom`)",
                bytes.len()
            ));
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
        Ok(AssignmentKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            id,
        })
    }

    /// The key in the file at `path` (its bytes; surrounding whitespace of a text key is
    /// trimmed).
    pub fn from_file(path: &Path) -> Result<AssignmentKey, SigningError> {
        let bad = |why: String| SigningError::Key {
            path: path.display().to_string(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let trimmed = match std::str::from_utf8(&bytes) {
            Ok(text) => text.trim().as_bytes(),
            Err(_) => &bytes[..],
        };
        AssignmentKey::new(trimmed).map_err(bad)
    }

    /// The signature of `fields` (hex).
    pub fn sign(&self, fields: &SignedFields<'_>) -> String {
        let tag = hmac::sign(&self.key, &fields.message());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks `signature` (hex, as found on the pod; `None` when absent) against `fields`.
    pub fn verify(
        &self,
        fields: &SignedFields<'_>,
        signature: Option<&str>,
    ) -> Result<(), SigningError> {
        let text = signature.ok_or(SigningError::Unsigned)?;
        let bytes = decode_hex(text.trim()).ok_or(SigningError::Mismatch)?;
        hmac::verify(&self.key, &fields.message(), &bytes).map_err(|_| SigningError::Mismatch)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(uid: &'a str, assignment: &'a str) -> SignedFields<'a> {
        SignedFields {
            namespace: "ml",
            name: "p",
            uid,
            node: "n1",
            assignment,
        }
    }

    #[test]
    fn only_the_signed_pod_and_text_verify() {
        let key = AssignmentKey::new(&[7u8; 32]).unwrap();
        let a = r#"{"version":1,"node":"n1","containers":[]}"#;
        let sig = key.sign(&fields("uid-1", a));
        assert_eq!(key.verify(&fields("uid-1", a), Some(&sig)), Ok(()));
        // Another pod (a copy has another UID), another text, another key, no signature.
        assert_eq!(
            key.verify(&fields("uid-2", a), Some(&sig)),
            Err(SigningError::Mismatch)
        );
        let more = r#"{"version":1,"node":"n1","containers":[ ]}"#;
        assert_eq!(
            key.verify(&fields("uid-1", more), Some(&sig)),
            Err(SigningError::Mismatch)
        );
        let other = AssignmentKey::new(&[8u8; 32]).unwrap();
        assert_eq!(
            other.verify(&fields("uid-1", a), Some(&sig)),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            key.verify(&fields("uid-1", a), None),
            Err(SigningError::Unsigned)
        );
        for junk in ["", "zz", "abc", &"0".repeat(1000)] {
            assert_eq!(
                key.verify(&fields("uid-1", a), Some(junk)),
                Err(SigningError::Mismatch)
            );
        }
        // Fields cannot be shifted into one another.
        let k = key.sign(&SignedFields {
            namespace: "a",
            name: "bc",
            uid: "u",
            node: "n",
            assignment: "x",
        });
        let shifted = SignedFields {
            namespace: "ab",
            name: "c",
            uid: "u",
            node: "n",
            assignment: "x",
        };
        assert!(key.verify(&shifted, Some(&k)).is_err());
    }

    #[test]
    fn short_or_missing_keys_are_refused() {
        assert!(AssignmentKey::new(b"short").is_err());
        let dir = std::env::temp_dir().join(format!("gpupool-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, format!("{}\n", "k".repeat(40))).unwrap();
        assert!(AssignmentKey::from_file(&path).is_ok());
        std::fs::write(&path, "tiny\n").unwrap();
        let e = AssignmentKey::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
        let e = AssignmentKey::from_file(&dir.join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
