//! Packet authentication: HMAC-SHA256 with a key id, verified in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length in bytes of the MAC that closes every packet.
pub const MAC_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The key material is empty.
    #[error("the key is empty")]
    Empty,
    /// Two keys share one id.
    #[error("key id {0} is defined twice")]
    DuplicateId(u8),
    /// The key chosen for sending is not in the ring.
    #[error("key id {0} is selected for sending but not defined")]
    MissingSendKey(u8),
}

/// One shared secret with the id that names it on the wire.
#[derive(Clone)]
pub struct Key {
    id: u8,
    mac: HmacSha256,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Makes a key from secret bytes; any non-empty length is accepted.
    pub fn new(id: u8, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::Empty);
        }
        let mac = <HmacSha256 as KeyInit>::new_from_slice(secret).map_err(|_| KeyError::Empty)?;
        Ok(Self { id, mac })
    }

    /// The id this key carries on the wire.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Computes the MAC of `data`.
    pub fn sign(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Checks `tag` against the MAC of `data` in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }
}

/// The keys a node accepts, and the one it signs with.
///
/// Several keys allow a rolling key change: add the new key everywhere,
/// switch the sending key, then remove the old one.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<Key>,
    send: u8,
}

impl Keyring {
    /// A ring holding one key, used for sending and receiving.
    pub fn single(key: Key) -> Self {
        let send = key.id();
        Self {
            keys: vec![key],
            send,
        }
    }

    /// A ring of several keys; `send` names the key used for outgoing packets.
    pub fn new(keys: Vec<Key>, send: u8) -> Result<Self, KeyError> {
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id() == k.id()) {
                return Err(KeyError::DuplicateId(k.id()));
            }
        }
        if !keys.iter().any(|k| k.id() == send) {
            return Err(KeyError::MissingSendKey(send));
        }
        Ok(Self { keys, send })
    }

    /// The key outgoing packets are signed with.
    pub fn send_key(&self) -> &Key {
        // `new` and `single` guarantee the send key exists; fall back to the
        // first key rather than panic if that invariant were ever broken.
        self.keys
            .iter()
            .find(|k| k.id() == self.send)
            .unwrap_or(&self.keys[0])
    }

    /// The key with this id, if the ring has it.
    pub fn get(&self, id: u8) -> Option<&Key> {
        self.keys.iter().find(|k| k.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_reject_tamper() {
        let k = Key::new(1, b"secret").unwrap();
        let tag = k.sign(b"hello");
        assert!(k.verify(b"hello", &tag));
        assert!(!k.verify(b"hellp", &tag));
        assert!(!k.verify(b"hello", &tag[..31]));
        let other = Key::new(1, b"Secret").unwrap();
        assert!(!other.verify(b"hello", &tag));
    }

    #[test]
    fn keyring_rejects_duplicates_and_missing_send_key() {
        let a = Key::new(1, b"a").unwrap();
        let b = Key::new(1, b"b").unwrap();
        assert_eq!(
            Keyring::new(vec![a.clone(), b], 1).unwrap_err(),
            KeyError::DuplicateId(1)
        );
        assert_eq!(
            Keyring::new(vec![a], 2).unwrap_err(),
            KeyError::MissingSendKey(2)
        );
        assert_eq!(Key::new(1, b"").unwrap_err(), KeyError::Empty);
    }
}
