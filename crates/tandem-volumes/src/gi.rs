//! Generation identifiers and the resync decision (DRBD's
//! `drbd_uuid_compare`, every numbered rule, written from the published
//! rule table in `shared/reference/replication.md` §1.6).
//!
//! A node's data generation is a random 64-bit value; the lowest bit says
//! whether it was made while the node was primary and is masked in every
//! comparison. The **bitmap** generation (one per peer) is the generation
//! this node's bitmap for that peer tracks changes against; **history**
//! holds earlier generations, newest first.

use serde::{Deserialize, Serialize};

/// A generation identifier.
pub type Uuid = u64;

/// The current generation of metadata never synced (`create-md`).
pub const JUST_CREATED: Uuid = 4;
/// Added to a bitmap generation to make a resync's sync generation (rules
/// 51 and 71 recognise it when the sync generation was lost).
pub const NEW_BM_OFFSET: Uuid = 0x0001_0000_0000_0000;
/// History slots kept.
pub const HISTORY: usize = 4;

/// Masks the role bit.
fn m(u: Uuid) -> Uuid {
    u & !1
}

/// One side's identifiers, as compared at connect time: the current
/// generation, the bitmap generation this side keeps for the other side,
/// and its history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generations {
    /// The current data generation.
    pub current: Uuid,
    /// The bitmap generation kept for the other side (0: in sync).
    pub bitmap: Uuid,
    /// Earlier generations, newest first (0: empty).
    pub history: [Uuid; HISTORY],
    /// Three nodes: the bitmap generation this side keeps for its third
    /// node (0: none) — a generation it went through.
    #[serde(default)]
    pub third: Uuid,
}

impl Generations {
    /// Whether `u` is in the history (empty slots never match).
    fn in_history(&self, u: Uuid) -> bool {
        m(u) != 0 && self.history.iter().any(|h| *h != 0 && m(*h) == m(u))
    }

    /// Whether this side went through generation `u`: its history, or the
    /// generation it tracks its third node against.
    fn went_through(&self, u: Uuid) -> bool {
        self.in_history(u) || (m(u) != 0 && m(self.third) == m(u))
    }
}

/// Facts about one side that the rules use besides the identifiers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideFlags {
    /// It crashed while primary (its activity log was applied).
    pub crashed_primary: bool,
    /// It is primary now.
    pub primary: bool,
    /// It holds the tie-break (the lower node index of the two).
    pub resolve_conflicts: bool,
    /// Its connection to this peer runs protocol C (a write is
    /// acknowledged only once on the peer's disk too).
    pub protocol_c: bool,
    /// Its copy is marked Outdated (a primary went on without it).
    pub outdated: bool,
    /// It has blocks marked out of sync with this peer (writes in flight
    /// when the connection was lost, or written since).
    pub marked: bool,
}

/// Which rule decided (named as in DRBD's numbered table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    /// 10: both just created.
    BothJustCreated,
    /// 20: this side just created, the peer not.
    SelfJustCreated,
    /// 30: the peer just created, this side not.
    PeerJustCreated,
    /// 34/36: equal generations; this side was sync source and missed
    /// the end of the resync.
    SourceMissedFinish,
    /// 35/37: equal generations; the peer was sync source and missed the
    /// end of the resync.
    TargetMissedFinish,
    /// 40: equal generations, nothing crashed (or tie-break of a double
    /// crash).
    Equal,
    /// 40/41: equal generations; a crashed primary's activity-log extents
    /// decide the direction.
    CrashedPrimary,
    /// 40 with protocol C: the crashed primary is the target of its own
    /// activity-log extents, the peer (not Outdated) the source — it holds
    /// every acknowledged write, while the crash may have cost the primary
    /// writes its disk had not flushed (DRBD 9 applies `crashed-primary`
    /// to protocols A and B only).
    CrashedPrimaryProtocolC,
    /// 40 with blocks marked: equal generations, but one side marked
    /// blocks (writes in flight when the connection broke, the primary's
    /// IO then suspended or idle so no new generation began): a bitmap
    /// resync from that side (from the tie-break holder if both), where
    /// DRBD logs "No resync, but N bits in bitmap!" and leaves them.
    /// With one side primary, that side is the source.
    EqualMarked,
    /// 50: this side's generation is the peer's bitmap generation.
    BitmapPeer,
    /// 51: as 50, the sync generation lost on the way.
    BitmapPeerLostSync,
    /// 60: this side's generation is in the peer's history.
    HistoryPeer,
    /// 55/75 (tandem, three nodes): one side's generation is in the
    /// other's history and both track each other since the same
    /// generation: a bitmap resync from the newer side.
    HistoryTracked,
    /// 70: the peer's generation is this side's bitmap generation.
    BitmapSelf,
    /// 71: as 70, the sync generation lost on the way.
    BitmapSelfLostSync,
    /// 80: the peer's generation is in this side's history.
    HistorySelf,
    /// 90: both changed the data since a common generation.
    BitmapBoth,
    /// 100: both changed the data; they share only history.
    HistoryBoth,
    /// No relation at all.
    Unrelated,
}

/// What a connection does about the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// No resync.
    NoSync,
    /// This side is the sync source; `full`: every block, else the bitmaps.
    Source {
        /// Every block.
        full: bool,
    },
    /// This side is the sync target.
    Target {
        /// Every block.
        full: bool,
    },
    /// Both sides changed the data since they last agreed: split brain.
    /// `recoverable`: they share a parent generation (their bitmaps cover
    /// the difference).
    SplitBrain {
        /// The bitmaps cover every difference.
        recoverable: bool,
    },
    /// The two copies are unrelated: refuse.
    Unrelated,
}

/// The outcome of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub strategy: Strategy,
    /// Why.
    pub rule: Rule,
}

fn d(strategy: Strategy, rule: Rule) -> Decision {
    Decision { strategy, rule }
}

const SRC: Strategy = Strategy::Source { full: false };
const SRC_FULL: Strategy = Strategy::Source { full: true };
const TGT: Strategy = Strategy::Target { full: false };
const TGT_FULL: Strategy = Strategy::Target { full: true };

/// Compares this side (`me`, `my`) with the peer, in the rules' order. Both
/// sides compute mirrored decisions from the same two records.
pub fn compare(me: &Generations, my: SideFlags, peer: &Generations, their: SideFlags) -> Decision {
    let (s, p) = (m(me.current), m(peer.current));
    let just = |u: Uuid| u == JUST_CREATED || u == 0;
    // 10, 20, 30.
    if just(s) && just(p) {
        return d(Strategy::NoSync, Rule::BothJustCreated);
    }
    if just(s) {
        return d(TGT_FULL, Rule::SelfJustCreated);
    }
    if just(p) {
        return d(SRC_FULL, Rule::PeerJustCreated);
    }
    if s == p {
        // Equal generations with something to resync and exactly one side
        // primary: the primary is the source (the bitmaps of both sides are
        // merged). What only a secondary marked is an earlier primary's
        // unacknowledged writes, or changes the primary also has; a primary
        // is never a sync target.
        let anything = m(me.bitmap) != 0 || m(peer.bitmap) != 0 || my.marked || their.marked;
        if anything && !my.crashed_primary && !their.crashed_primary {
            if my.primary && !their.primary {
                return d(SRC, Rule::EqualMarked);
            }
            if their.primary && !my.primary {
                return d(TGT, Rule::EqualMarked);
            }
        }
        // 34/36, 35/37: one side still holds a bitmap generation.
        if m(peer.bitmap) == 0 && m(me.bitmap) != 0 {
            return d(SRC, Rule::SourceMissedFinish);
        }
        if m(me.bitmap) == 0 && m(peer.bitmap) != 0 {
            return d(TGT, Rule::TargetMissedFinish);
        }
        // 40/41.
        match (my.crashed_primary, their.crashed_primary) {
            (false, false) => {
                return match (my.marked, their.marked) {
                    (false, false) => d(Strategy::NoSync, Rule::Equal),
                    (true, false) => d(SRC, Rule::EqualMarked),
                    (false, true) => d(TGT, Rule::EqualMarked),
                    (true, true) if my.resolve_conflicts => d(SRC, Rule::EqualMarked),
                    (true, true) => d(TGT, Rule::EqualMarked),
                };
            }
            _ if my.primary && their.primary => {
                return d(
                    Strategy::SplitBrain { recoverable: false },
                    Rule::CrashedPrimary,
                );
            }
            _ if my.primary => return d(SRC, Rule::CrashedPrimary),
            _ if their.primary => return d(TGT, Rule::CrashedPrimary),
            (true, false) if my.protocol_c && their.protocol_c && !their.outdated => {
                return d(TGT, Rule::CrashedPrimaryProtocolC);
            }
            (false, true) if my.protocol_c && their.protocol_c && !my.outdated => {
                return d(SRC, Rule::CrashedPrimaryProtocolC);
            }
            (true, false) => return d(SRC, Rule::CrashedPrimary),
            (false, true) => return d(TGT, Rule::CrashedPrimary),
            (true, true) => {
                let s = if my.resolve_conflicts { TGT } else { SRC };
                return d(s, Rule::CrashedPrimary);
            }
        }
    }
    // 50, 51.
    if s == m(peer.bitmap) {
        return d(TGT, Rule::BitmapPeer);
    }
    if m(peer.bitmap) != 0
        && s == m(peer.history[0])
        && m(peer.bitmap) == m(peer.history[0]).wrapping_add(NEW_BM_OFFSET)
    {
        return d(TGT, Rule::BitmapPeerLostSync);
    }
    // 55/75 (three nodes): one side went through the other's generation
    // since, and each tracks the other since the same one (two
    // secondaries of an earlier primary, one of them promoted since): a
    // bitmap resync from the newer, both bitmaps merged, where 60/80
    // would resync everything.
    // "Tracks since": the newer side's bitmap generation is an ancestor of
    // the older side's current (the older side tracks since it too, or
    // went through it and tracks nothing since its current), so the two
    // bitmaps cover every difference.
    let covers = |a: &Generations, b: &Generations| {
        m(a.bitmap) != 0
            && (m(a.bitmap) == m(b.bitmap) || (m(b.bitmap) == 0 && b.in_history(a.bitmap)))
    };
    if covers(peer, me) && peer.went_through(s) {
        return d(TGT, Rule::HistoryTracked);
    }
    if covers(me, peer) && me.went_through(p) {
        return d(SRC, Rule::HistoryTracked);
    }
    // 60.
    if peer.in_history(s) {
        return d(TGT_FULL, Rule::HistoryPeer);
    }
    // 70, 71.
    if m(me.bitmap) == p {
        return d(SRC, Rule::BitmapSelf);
    }
    if m(me.bitmap) != 0
        && m(me.history[0]) == p
        && m(me.bitmap) == m(me.history[0]).wrapping_add(NEW_BM_OFFSET)
    {
        return d(SRC, Rule::BitmapSelfLostSync);
    }
    // 80.
    if me.in_history(p) {
        return d(SRC_FULL, Rule::HistorySelf);
    }
    // 90.
    if m(me.bitmap) != 0 && m(me.bitmap) == m(peer.bitmap) {
        return d(Strategy::SplitBrain { recoverable: true }, Rule::BitmapBoth);
    }
    // 100.
    if me.history.iter().any(|h| peer.in_history(*h)) {
        return d(
            Strategy::SplitBrain { recoverable: false },
            Rule::HistoryBoth,
        );
    }
    d(Strategy::Unrelated, Rule::Unrelated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(current: Uuid, bitmap: Uuid, h0: Uuid, h1: Uuid) -> Generations {
        Generations {
            current,
            bitmap,
            history: [h0, h1, 0, 0],
            third: 0,
        }
    }
    const NONE: SideFlags = SideFlags {
        crashed_primary: false,
        primary: false,
        resolve_conflicts: false,
        protocol_c: false,
        outdated: false,
        marked: false,
    };

    /// Every rule from both sides: the two decisions mirror each other.
    fn both(me: Generations, peer: Generations, want: Decision) {
        let got = compare(&me, NONE, &peer, NONE);
        assert_eq!(got, want);
        let back = compare(&peer, NONE, &me, NONE);
        let mirrored = match want.strategy {
            Strategy::Source { full } => Strategy::Target { full },
            Strategy::Target { full } => Strategy::Source { full },
            x => x,
        };
        assert_eq!(back.strategy, mirrored, "mirror of {want:?}: {back:?}");
    }

    #[test]
    fn rules_10_20_30_just_created() {
        both(
            g(4, 0, 0, 0),
            g(4, 0, 0, 0),
            d(Strategy::NoSync, Rule::BothJustCreated),
        );
        both(
            g(4, 0, 0, 0),
            g(0x100, 0, 0, 0),
            d(TGT_FULL, Rule::SelfJustCreated),
        );
        both(
            g(0x100, 0, 0, 0),
            g(0, 0, 0, 0),
            d(SRC_FULL, Rule::PeerJustCreated),
        );
    }

    #[test]
    fn rules_34_to_40_equal_generations() {
        both(
            g(0x100, 0x80, 0, 0),
            g(0x100, 0, 0, 0),
            d(SRC, Rule::SourceMissedFinish),
        );
        both(
            g(0x100, 0, 0, 0),
            g(0x100, 0x80, 0, 0),
            d(TGT, Rule::TargetMissedFinish),
        );
        // The primary bit is masked.
        both(
            g(0x101, 0, 0, 0),
            g(0x100, 0, 0, 0),
            d(Strategy::NoSync, Rule::Equal),
        );
    }

    #[test]
    fn rules_40_41_crashed_primary() {
        let a = g(0x100, 0, 0, 0);
        let crashed = SideFlags {
            crashed_primary: true,
            ..NONE
        };
        assert_eq!(compare(&a, crashed, &a, NONE), d(SRC, Rule::CrashedPrimary));
        assert_eq!(compare(&a, NONE, &a, crashed), d(TGT, Rule::CrashedPrimary));
        // A primary now takes precedence over the crashed one.
        let primary = SideFlags {
            primary: true,
            ..NONE
        };
        assert_eq!(
            compare(&a, crashed, &a, primary),
            d(TGT, Rule::CrashedPrimary)
        );
        // Both crashed: the tie-break holder becomes target.
        let tie = SideFlags {
            resolve_conflicts: true,
            ..crashed
        };
        assert_eq!(compare(&a, tie, &a, crashed), d(TGT, Rule::CrashedPrimary));
        assert_eq!(compare(&a, crashed, &a, tie), d(SRC, Rule::CrashedPrimary));
    }

    #[test]
    fn rule_40_equal_generations_with_marked_blocks_resync_them() {
        let a = g(0x100, 0, 0, 0);
        let marked = SideFlags {
            marked: true,
            ..NONE
        };
        assert_eq!(compare(&a, marked, &a, NONE), d(SRC, Rule::EqualMarked));
        assert_eq!(compare(&a, NONE, &a, marked), d(TGT, Rule::EqualMarked));
        let tie = SideFlags {
            resolve_conflicts: true,
            ..marked
        };
        assert_eq!(compare(&a, tie, &a, marked), d(SRC, Rule::EqualMarked));
        assert_eq!(compare(&a, marked, &a, tie), d(TGT, Rule::EqualMarked));
    }

    #[test]
    fn equal_generations_with_one_side_primary_resync_from_the_primary() {
        // Only the secondary marked (an earlier primary's writes that
        // reached it alone), or only it still holds a bitmap generation:
        // the primary is the source all the same, never a target.
        let a = g(0x100, 0, 0, 0);
        let tracking = g(0x100, 0x80, 0, 0);
        let marked = SideFlags {
            marked: true,
            ..NONE
        };
        let primary = SideFlags {
            primary: true,
            ..NONE
        };
        assert_eq!(compare(&a, primary, &a, marked), d(SRC, Rule::EqualMarked));
        assert_eq!(compare(&a, marked, &a, primary), d(TGT, Rule::EqualMarked));
        assert_eq!(
            compare(&a, primary, &tracking, NONE),
            d(SRC, Rule::EqualMarked)
        );
        // Nothing to resync: nothing happens.
        assert_eq!(
            compare(&a, primary, &a, NONE),
            d(Strategy::NoSync, Rule::Equal)
        );
    }

    #[test]
    fn rules_55_75_a_secondary_promoted_since_resyncs_the_other_by_bitmap() {
        // n2 and n3 both track each other since 0x80; n3 followed the old
        // primary to 0x100 (kept as the generation it tracks that primary
        // against) and was promoted to 0x200; n2 is still at 0x100.
        let n3 = Generations {
            third: 0x100,
            ..g(0x200, 0x80, 0, 0)
        };
        let n2 = g(0x100, 0x80, 0, 0);
        both(n3, n2, d(SRC, Rule::HistoryTracked));
        // From history too.
        both(g(0x200, 0x80, 0x100, 0), n2, d(SRC, Rule::HistoryTracked));
        // n2 learnt it was in sync with n3 at 0x100 (tracks nothing), and
        // went through 0x80.
        both(n3, g(0x100, 0, 0x80, 0), d(SRC, Rule::HistoryTracked));
        // Not tracking since the same generation: everything (rule 80).
        both(g(0x200, 0x90, 0x100, 0), n2, d(SRC_FULL, Rule::HistorySelf));
    }

    #[test]
    fn rule_40_with_protocol_c_the_peer_that_stayed_up_is_the_source() {
        let a = g(0x100, 0, 0, 0);
        let c = SideFlags {
            protocol_c: true,
            ..NONE
        };
        let crashed = SideFlags {
            crashed_primary: true,
            ..c
        };
        assert_eq!(
            compare(&a, crashed, &a, c),
            d(TGT, Rule::CrashedPrimaryProtocolC)
        );
        assert_eq!(
            compare(&a, c, &a, crashed),
            d(SRC, Rule::CrashedPrimaryProtocolC)
        );
        // An outdated peer never gives the crashed primary its data.
        let outdated = SideFlags {
            outdated: true,
            ..c
        };
        assert_eq!(
            compare(&a, crashed, &a, outdated),
            d(SRC, Rule::CrashedPrimary)
        );
        assert_eq!(
            compare(&a, outdated, &a, crashed),
            d(TGT, Rule::CrashedPrimary)
        );
        // A primary now still decides; both crashed, the tie-break does.
        let primary = SideFlags { primary: true, ..c };
        assert_eq!(
            compare(&a, crashed, &a, primary),
            d(TGT, Rule::CrashedPrimary)
        );
        let tie = SideFlags {
            resolve_conflicts: true,
            ..crashed
        };
        assert_eq!(compare(&a, tie, &a, crashed), d(TGT, Rule::CrashedPrimary));
    }

    #[test]
    fn rules_50_51_60_peer_is_newer() {
        // The secondary came back: the primary's bitmap tracks its generation.
        both(
            g(0x100, 0, 0, 0),
            g(0x200, 0x100, 0, 0),
            d(TGT, Rule::BitmapPeer),
        );
        // The sync generation was lost: the peer's bitmap is its history[0]
        // plus the offset.
        both(
            g(0x100, 0, 0, 0),
            g(0x200, 0x100 + NEW_BM_OFFSET, 0x100, 0),
            d(TGT, Rule::BitmapPeerLostSync),
        );
        both(
            g(0x100, 0, 0, 0),
            g(0x300, 0, 0x100, 0),
            d(TGT_FULL, Rule::HistoryPeer),
        );
    }

    #[test]
    fn rules_70_71_80_self_is_newer() {
        both(
            g(0x200, 0x100, 0, 0),
            g(0x100, 0, 0, 0),
            d(SRC, Rule::BitmapSelf),
        );
        both(
            g(0x200, 0x100 + NEW_BM_OFFSET, 0x100, 0),
            g(0x100, 0, 0, 0),
            d(SRC, Rule::BitmapSelfLostSync),
        );
        both(
            g(0x300, 0, 0x100, 0),
            g(0x100, 0, 0, 0),
            d(SRC_FULL, Rule::HistorySelf),
        );
    }

    #[test]
    fn rules_90_100_split_brain_and_unrelated() {
        both(
            g(0x200, 0x100, 0, 0),
            g(0x300, 0x100, 0, 0),
            d(Strategy::SplitBrain { recoverable: true }, Rule::BitmapBoth),
        );
        both(
            g(0x200, 0, 0x100, 0),
            g(0x300, 0, 0x100, 0),
            d(
                Strategy::SplitBrain { recoverable: false },
                Rule::HistoryBoth,
            ),
        );
        both(
            g(0x200, 0, 0x10, 0),
            g(0x300, 0, 0x20, 0),
            d(Strategy::Unrelated, Rule::Unrelated),
        );
    }
}
