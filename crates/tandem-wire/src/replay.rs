//! Replay protection: which (incarnation, sequence) pairs were already seen.

/// Width of the window of recent sequence numbers remembered out of order.
const WINDOW: u64 = 64;

/// What the replay window says about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// A new sequence number of the known incarnation.
    Fresh,
    /// The first packet of a newer incarnation: the sender restarted (or this
    /// is the first packet ever seen from it).
    NewIncarnation,
    /// Already accepted once: a duplicate or a replay.
    Replayed,
    /// Older than anything still remembered: an older incarnation, or a
    /// sequence number behind the window.
    Stale,
}

impl ReplayVerdict {
    /// Whether the packet should be processed.
    pub fn accepted(self) -> bool {
        matches!(self, ReplayVerdict::Fresh | ReplayVerdict::NewIncarnation)
    }
}

/// Sliding window over the sequence numbers of one sender on one link, as in
/// IPsec's anti-replay window (RFC 4303 §3.4.3): the highest sequence number
/// seen plus a bitmap of the 64 before it, so reordered packets still pass.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    incarnation: Option<u64>,
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// An empty window: the first packet is accepted as a new incarnation.
    pub fn new() -> Self {
        Self::default()
    }

    /// The incarnation the window currently tracks.
    pub fn incarnation(&self) -> Option<u64> {
        self.incarnation
    }

    /// Checks a packet's (incarnation, seq) and records it when accepted.
    pub fn check(&mut self, incarnation: u64, seq: u64) -> ReplayVerdict {
        match self.incarnation {
            Some(cur) if incarnation < cur => return ReplayVerdict::Stale,
            Some(cur) if incarnation == cur => {}
            _ => {
                self.incarnation = Some(incarnation);
                self.highest = seq;
                self.seen = 1;
                return ReplayVerdict::NewIncarnation;
            }
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
            return ReplayVerdict::Fresh;
        }
        let back = self.highest - seq;
        if back >= WINDOW {
            return ReplayVerdict::Stale;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            return ReplayVerdict::Replayed;
        }
        self.seen |= bit;
        ReplayVerdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_semantics() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(5, 10), ReplayVerdict::NewIncarnation);
        assert_eq!(w.check(5, 10), ReplayVerdict::Replayed);
        assert_eq!(w.check(5, 12), ReplayVerdict::Fresh);
        assert_eq!(w.check(5, 11), ReplayVerdict::Fresh, "reordered");
        assert_eq!(w.check(5, 11), ReplayVerdict::Replayed);
        assert_eq!(w.check(5, 200), ReplayVerdict::Fresh);
        assert_eq!(w.check(5, 12), ReplayVerdict::Stale, "behind the window");
        assert_eq!(w.check(4, 1000), ReplayVerdict::Stale, "old incarnation");
        assert_eq!(w.check(6, 0), ReplayVerdict::NewIncarnation);
        assert_eq!(w.check(5, 201), ReplayVerdict::Stale);
    }

    proptest! {
        /// Whatever the order of arrival, each sequence number is accepted at
        /// most once.
        #[test]
        fn each_seq_accepted_at_most_once(seqs in proptest::collection::vec(0u64..300, 0..500)) {
            let mut w = ReplayWindow::new();
            let mut accepted = std::collections::HashSet::new();
            for s in seqs {
                if w.check(1, s).accepted() {
                    prop_assert!(accepted.insert(s), "seq {} accepted twice", s);
                }
            }
        }

        /// In-order delivery with gaps is always accepted.
        #[test]
        fn increasing_sequences_are_fresh(mut seqs in proptest::collection::vec(0u64..1_000_000, 1..200)) {
            seqs.sort_unstable();
            seqs.dedup();
            let mut w = ReplayWindow::new();
            for (i, s) in seqs.into_iter().enumerate() {
                let v = w.check(1, s);
                prop_assert!(v.accepted(), "{} at {} gave {:?}", s, i, v);
            }
        }
    }
}
