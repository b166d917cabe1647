//! The `fencing` policy of a volume, in DRBD's words: what the primary does
//! when it loses a peer whose copy could later be promoted.

use serde::{Deserialize, Serialize};

/// A volume's fencing policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fencing {
    /// Nothing is done: the peer's copy stays promotable.
    DontCare,
    /// The cluster outdates the peer's copy (it outdates itself once the
    /// group runs without it for the grace period); the primary writes on
    /// meanwhile — a write acknowledged in that window is lost if the
    /// primary dies before the peer's copy is outdated.
    #[default]
    ResourceOnly,
    /// As `resource-only`, and the primary's IO freezes (writes wait, none
    /// is acknowledged) until the peer's copy is outdated or barred by the
    /// cluster, a fence agent powered the peer off, or it reconnects: no
    /// acknowledged write is ever missing from a copy that can be promoted.
    ResourceAndStonith,
}

impl Fencing {
    /// DRBD's spelling (`resource-and-stonith`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DontCare => "dont-care",
            Self::ResourceOnly => "resource-only",
            Self::ResourceAndStonith => "resource-and-stonith",
        }
    }

    /// Parses DRBD's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::DontCare, Self::ResourceOnly, Self::ResourceAndStonith]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

impl std::fmt::Display for Fencing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Fencing;

    #[test]
    fn drbd_spellings_round_trip() {
        for f in [
            Fencing::DontCare,
            Fencing::ResourceOnly,
            Fencing::ResourceAndStonith,
        ] {
            assert_eq!(Fencing::parse(f.as_str()), Some(f));
        }
        assert_eq!(Fencing::parse("stonith"), None);
    }
}
