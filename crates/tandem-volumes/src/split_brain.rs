//! Automatic split-brain recovery: DRBD's `after-sb-0pri`, `after-sb-1pri`
//! and `after-sb-2pri` policies, with DRBD's meaning
//! (`replication.md` §1.7). Both sides of a connection run [`resolve`] on
//! the same facts, swapped, and reach mirrored answers: one keeps its
//! changes (sync source), the other discards them (sync target), or both
//! stay disconnected. A split brain is never merged.

use serde::{Deserialize, Serialize};

/// What to do with a split brain when neither node is primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoPrimary {
    /// Stay disconnected (StandAlone) until an operator decides.
    #[default]
    Disconnect,
    /// The node that became primary after the split loses its changes.
    DiscardYoungerPrimary,
    /// The node that was already primary at the split loses its changes.
    DiscardOlderPrimary,
    /// A node that wrote nothing since the split is overwritten; if both
    /// wrote, disconnect.
    DiscardZeroChanges,
    /// The node that changed fewer blocks is overwritten.
    DiscardLeastChanges,
}

/// What to do with a split brain when one node is primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnePrimary {
    /// Stay disconnected.
    #[default]
    Disconnect,
    /// Apply the no-primary policy, but only if it discards the
    /// secondary's changes; otherwise disconnect.
    Consensus,
    /// The secondary's changes are discarded.
    DiscardSecondary,
}

/// What to do with a split brain when both nodes are primary: tandem never
/// connects two primaries, so this is always `disconnect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TwoPrimaries {
    /// Stay disconnected.
    #[default]
    Disconnect,
}

/// The three policies of a volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    /// `after-sb-0pri`.
    pub zero: NoPrimary,
    /// `after-sb-1pri`.
    pub one: OnePrimary,
    /// `after-sb-2pri`.
    pub two: TwoPrimaries,
}

/// One side's facts at the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    /// Its node index (the tie-break: the lower index keeps its data).
    pub node: u8,
    /// Primary now.
    pub primary: bool,
    /// Was already primary when the split happened (the primary bit of
    /// the bitmap generation it keeps for the other side).
    pub primary_at_split: bool,
    /// Blocks it changed since the split.
    pub changes: u64,
}

/// The outcome for the side calling [`resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Keep this side's data: it becomes the sync source.
    Keep,
    /// Discard this side's changes: it becomes the sync target.
    Discard,
    /// No policy decides: stay disconnected.
    Disconnect,
}

impl Resolution {
    /// The answer the other side reaches.
    pub fn mirrored(self) -> Self {
        match self {
            Resolution::Keep => Resolution::Discard,
            Resolution::Discard => Resolution::Keep,
            Resolution::Disconnect => Resolution::Disconnect,
        }
    }
}

/// Applies the policies to a split brain between `me` and `peer`; the
/// text says which rule decided, for the log.
pub fn resolve(p: &Policies, me: Side, peer: Side) -> (Resolution, &'static str) {
    match (me.primary, peer.primary) {
        (false, false) => zero(p.zero, me, peer),
        (true, true) => (Resolution::Disconnect, "after-sb-2pri disconnect"),
        (mine, _) => match p.one {
            OnePrimary::Disconnect => (Resolution::Disconnect, "after-sb-1pri disconnect"),
            OnePrimary::DiscardSecondary => (
                if mine {
                    Resolution::Keep
                } else {
                    Resolution::Discard
                },
                "after-sb-1pri discard-secondary",
            ),
            OnePrimary::Consensus => {
                let (r, _) = zero(p.zero, me, peer);
                // Accepted only when the secondary is the one discarded.
                let secondary_discarded = if mine {
                    r == Resolution::Keep
                } else {
                    r == Resolution::Discard
                };
                if secondary_discarded {
                    (r, "after-sb-1pri consensus")
                } else {
                    (
                        Resolution::Disconnect,
                        "after-sb-1pri consensus (no agreement)",
                    )
                }
            }
        },
    }
}

fn zero(policy: NoPrimary, me: Side, peer: Side) -> (Resolution, &'static str) {
    let tie = || {
        if me.node < peer.node {
            Resolution::Keep
        } else {
            Resolution::Discard
        }
    };
    let by_changes = |least: bool| -> Resolution {
        match (me.changes, peer.changes) {
            (0, 0) => tie(),
            (0, _) => Resolution::Discard,
            (_, 0) => Resolution::Keep,
            (a, b) if least && a < b => Resolution::Discard,
            (a, b) if least && a > b => Resolution::Keep,
            _ if least => tie(),
            _ => Resolution::Disconnect,
        }
    };
    match policy {
        NoPrimary::Disconnect => (Resolution::Disconnect, "after-sb-0pri disconnect"),
        NoPrimary::DiscardZeroChanges => (by_changes(false), "after-sb-0pri discard-zero-changes"),
        NoPrimary::DiscardLeastChanges => (by_changes(true), "after-sb-0pri discard-least-changes"),
        NoPrimary::DiscardYoungerPrimary | NoPrimary::DiscardOlderPrimary => {
            let older_loses = policy == NoPrimary::DiscardOlderPrimary;
            match (me.primary_at_split, peer.primary_at_split) {
                (a, b) if a != b => {
                    // `a`: this side was the primary already (the older).
                    let r = if a == older_loses {
                        Resolution::Discard
                    } else {
                        Resolution::Keep
                    };
                    (
                        r,
                        if older_loses {
                            "after-sb-0pri discard-older-primary"
                        } else {
                            "after-sb-0pri discard-younger-primary"
                        },
                    )
                }
                // Undecided: as DRBD, fall back to the changes.
                _ => (
                    by_changes(false),
                    "after-sb-0pri (primaries undecided) discard-zero-changes",
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(node: u8, primary: bool, at_split: bool, changes: u64) -> Side {
        Side {
            node,
            primary,
            primary_at_split: at_split,
            changes,
        }
    }

    fn pol(zero: NoPrimary, one: OnePrimary) -> Policies {
        Policies {
            zero,
            one,
            two: TwoPrimaries::Disconnect,
        }
    }

    /// Both sides reach mirrored answers, whatever the facts.
    #[test]
    fn both_sides_agree() {
        let zeros = [
            NoPrimary::Disconnect,
            NoPrimary::DiscardYoungerPrimary,
            NoPrimary::DiscardOlderPrimary,
            NoPrimary::DiscardZeroChanges,
            NoPrimary::DiscardLeastChanges,
        ];
        let ones = [
            OnePrimary::Disconnect,
            OnePrimary::Consensus,
            OnePrimary::DiscardSecondary,
        ];
        for z in zeros {
            for o in ones {
                for a in 0..16u8 {
                    for changes in [(0, 0), (0, 5), (5, 0), (3, 7), (7, 3), (4, 4)] {
                        let me = side(0, a & 1 != 0, a & 2 != 0, changes.0);
                        let peer = side(1, a & 4 != 0, a & 8 != 0, changes.1);
                        let p = pol(z, o);
                        let (r1, _) = resolve(&p, me, peer);
                        let (r2, _) = resolve(&p, peer, me);
                        assert_eq!(r1, r2.mirrored(), "{p:?} {me:?} {peer:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn drbd_meanings() {
        use Resolution::*;
        let p = |z| pol(z, OnePrimary::Disconnect);
        // discard-zero-changes: the side that wrote nothing is overwritten.
        let (r, _) = resolve(
            &p(NoPrimary::DiscardZeroChanges),
            side(0, false, false, 0),
            side(1, false, true, 9),
        );
        assert_eq!(r, Discard);
        let (r, _) = resolve(
            &p(NoPrimary::DiscardZeroChanges),
            side(0, false, false, 3),
            side(1, false, true, 9),
        );
        assert_eq!(r, Disconnect);
        // discard-least-changes.
        let (r, _) = resolve(
            &p(NoPrimary::DiscardLeastChanges),
            side(0, false, false, 3),
            side(1, false, true, 9),
        );
        assert_eq!(r, Discard);
        // younger primary: the one not primary at the split.
        let (r, _) = resolve(
            &p(NoPrimary::DiscardYoungerPrimary),
            side(0, false, false, 3),
            side(1, false, true, 9),
        );
        assert_eq!(r, Discard);
        let (r, _) = resolve(
            &p(NoPrimary::DiscardOlderPrimary),
            side(0, false, false, 3),
            side(1, false, true, 9),
        );
        assert_eq!(r, Keep);
        // 1pri discard-secondary; consensus only when it discards the secondary.
        let (r, _) = resolve(
            &pol(NoPrimary::Disconnect, OnePrimary::DiscardSecondary),
            side(0, false, false, 3),
            side(1, true, true, 9),
        );
        assert_eq!(r, Discard);
        let c = pol(NoPrimary::DiscardZeroChanges, OnePrimary::Consensus);
        let (r, _) = resolve(&c, side(0, false, false, 0), side(1, true, true, 9));
        assert_eq!(r, Discard, "the idle secondary is discarded");
        let (r, _) = resolve(&c, side(0, false, false, 5), side(1, true, true, 0));
        assert_eq!(r, Disconnect, "consensus never discards the primary");
        // Two primaries: never.
        let (r, _) = resolve(&c, side(0, true, false, 0), side(1, true, true, 9));
        assert_eq!(r, Disconnect);
        // Default: disconnect.
        let (r, _) = resolve(
            &Policies::default(),
            side(0, false, false, 0),
            side(1, false, true, 9),
        );
        assert_eq!(r, Disconnect);
    }
}
