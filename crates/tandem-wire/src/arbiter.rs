//! The arbitrator protocol (`tandem witness`): one UDP datagram asks for
//! the arbitrator's vote, one answers. Each is `TNDW`, a version byte, a
//! JSON body and an HMAC-SHA256 over everything before it, made with the
//! cluster's arbitrator key. JSON keeps the two messages readable in a
//! packet capture; they are rare (only while a peer is silent) and small.
//!
//! Replays: a request carries the node's incarnation and a counter, which
//! the arbitrator requires to grow; an answer echoes the request's random
//! nonce, which the node checks.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Key, MAC_LEN};

/// First bytes of every arbitrator datagram.
pub const ARBITER_MAGIC: &[u8; 4] = b"TNDW";
/// Protocol version.
pub const ARBITER_VERSION: u8 = 1;
/// Largest datagram either side accepts.
pub const ARBITER_MAX: usize = 1024;
/// Default UDP port of `tandem witness`.
pub const ARBITER_PORT: u16 = 7695;

/// A node's request for the arbitrator's vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// Cluster name.
    pub cluster: String,
    /// The asking node.
    pub node: String,
    /// Its incarnation (grows at every daemon start).
    pub incarnation: u64,
    /// Grows with every request within an incarnation.
    pub counter: u64,
    /// Random; echoed in the answer.
    pub nonce: u64,
    /// The node gives the vote back (it needs it no more) instead of
    /// asking for it.
    #[serde(default)]
    pub release: bool,
}

/// The arbitrator's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteAnswer {
    /// Cluster name, as asked.
    pub cluster: String,
    /// The asking node, as asked.
    pub node: String,
    /// The request's nonce.
    pub nonce: u64,
    /// Whether the asking node holds the vote now.
    pub granted: bool,
    /// Who holds it (the asker when granted).
    pub holder: Option<String>,
    /// How long a granted vote lasts from the moment it was granted.
    pub vote_ms: u64,
}

/// Why an arbitrator datagram was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArbiterError {
    /// Shorter than magic, version and MAC.
    #[error("datagram too short")]
    TooShort,
    /// Longer than [`ARBITER_MAX`].
    #[error("datagram too long")]
    TooLong,
    /// Not an arbitrator datagram.
    #[error("not a tandem arbitrator datagram")]
    BadMagic,
    /// Another protocol version.
    #[error("unknown arbitrator protocol version {0}")]
    Version(u8),
    /// The body is not the expected JSON.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Authentic under one cluster's key, but naming another cluster.
    #[error("signed with one cluster's key but naming another")]
    ClusterMismatch,
    /// The MAC matches none of the keys (wrong key, tampering, or a
    /// cluster this end does not serve).
    #[error("bad MAC (wrong key, or a cluster not served here)")]
    BadMac,
}

/// Signs `msg` with `key` into a datagram.
pub fn seal<T: Serialize>(key: &Key, msg: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(ARBITER_MAGIC);
    out.push(ARBITER_VERSION);
    // Serialising these plain structs cannot fail.
    out.extend_from_slice(&serde_json::to_vec(msg).unwrap_or_default());
    let tag = key.sign(&out);
    out.extend_from_slice(&tag);
    out
}

/// Checks a datagram's MAC against the `(cluster, key)` pairs given, then
/// — only once it is known to be authentic — parses it, and checks that it
/// names the cluster whose key signed it. Nothing an attacker without a key
/// sends is ever parsed.
pub fn open<'k, T: DeserializeOwned + Cluster>(
    bytes: &[u8],
    keys: impl IntoIterator<Item = (&'k str, &'k Key)>,
) -> Result<T, ArbiterError> {
    if bytes.len() > ARBITER_MAX {
        return Err(ArbiterError::TooLong);
    }
    if bytes.len() < ARBITER_MAGIC.len() + 1 + MAC_LEN {
        return Err(ArbiterError::TooShort);
    }
    if &bytes[..4] != ARBITER_MAGIC {
        return Err(ArbiterError::BadMagic);
    }
    if bytes[4] != ARBITER_VERSION {
        return Err(ArbiterError::Version(bytes[4]));
    }
    let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    // Every cluster whose key signed it (clusters may share a key).
    let signers: Vec<&str> = keys
        .into_iter()
        .filter(|(_, key)| key.verify(signed, tag))
        .map(|(cluster, _)| cluster)
        .collect();
    if signers.is_empty() {
        return Err(ArbiterError::BadMac);
    }
    let msg: T =
        serde_json::from_slice(&signed[5..]).map_err(|e| ArbiterError::Malformed(e.to_string()))?;
    if !signers.contains(&msg.cluster()) {
        return Err(ArbiterError::ClusterMismatch);
    }
    Ok(msg)
}

/// Messages that name their cluster (to pick the key).
pub trait Cluster {
    /// The cluster name.
    fn cluster(&self) -> &str;
}

impl Cluster for VoteRequest {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl Cluster for VoteAnswer {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> VoteRequest {
        VoteRequest {
            cluster: "web".into(),
            node: "n1".into(),
            incarnation: 7,
            counter: 1,
            nonce: 42,
            release: false,
        }
    }

    #[test]
    fn round_trip_and_every_rejection() {
        let key = Key::new(1, b"arbiter key").unwrap_or_else(|_| unreachable!());
        let other = Key::new(1, b"another key").unwrap_or_else(|_| unreachable!());
        let bytes = seal(&key, &req());
        assert_eq!(&bytes[..4], b"TNDW");
        let both = [("db", &other), ("web", &key)];
        let got: VoteRequest = open(&bytes, both).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, req());
        let bad = open::<VoteRequest>(&bytes, [("web", &other)]);
        assert_eq!(bad, Err(ArbiterError::BadMac));
        let unknown = open::<VoteRequest>(&bytes, []);
        assert_eq!(unknown, Err(ArbiterError::BadMac));
        // Signed with db's key but naming web: refused.
        let mismatch = open::<VoteRequest>(&seal(&other, &req()), both);
        assert_eq!(mismatch, Err(ArbiterError::ClusterMismatch));
        // Two clusters sharing a key: the one it names.
        let shared = [("db", &key), ("web", &key)];
        assert_eq!(open::<VoteRequest>(&bytes, shared), Ok(req()));
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        assert!(open::<VoteRequest>(&flipped, both).is_err());
        assert_eq!(
            open::<VoteRequest>(&bytes[..10], both),
            Err(ArbiterError::TooShort)
        );
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(
            open::<VoteRequest>(&v2, both),
            Err(ArbiterError::Version(2))
        );
        assert_eq!(
            open::<VoteRequest>(&vec![0u8; 2000], both),
            Err(ArbiterError::TooLong)
        );
        // A request is not an answer.
        assert!(matches!(
            open::<VoteAnswer>(&bytes, both),
            Err(ArbiterError::Malformed(_))
        ));
    }

    /// Issue 12, finding 12: the JSON was parsed before the MAC was
    /// checked. Garbage that is not signed never reaches the parser: it is
    /// refused as a bad MAC, whatever it holds.
    #[test]
    fn unsigned_garbage_is_never_parsed() {
        let key = Key::new(1, b"arbiter key").unwrap_or_else(|_| unreachable!());
        let mut junk = b"TNDW\x01{not json at all\n".to_vec();
        junk.extend_from_slice(&[0u8; MAC_LEN]);
        assert_eq!(
            open::<VoteRequest>(&junk, [("web", &key)]),
            Err(ArbiterError::BadMac)
        );
    }
}
