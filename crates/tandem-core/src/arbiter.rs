//! The arbitrator's vote keeping (`tandem witness`), sans-IO: for each
//! cluster it serves, at most one node holds the vote at a time, for a
//! limited time. A node gets the vote when nobody holds it, when it holds
//! it already (a renewal), or when the holder's vote has lapsed. Requests
//! must carry a growing (incarnation, counter), so a replayed request
//! changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use crate::Timestamp;

/// What the arbitrator answers a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The asker holds the vote until `now + vote`; `changed`: it did not
    /// hold it just before.
    Granted {
        /// Whether the holder changed.
        changed: bool,
    },
    /// Another node holds the vote.
    Refused {
        /// The holder.
        holder: String,
    },
    /// The request's (incarnation, counter) did not grow: ignored.
    Replayed,
}

#[derive(Debug, Default)]
struct ClusterVotes {
    holder: Option<(String, Timestamp)>,
    last: HashMap<String, (u64, u64)>,
}

impl ClusterVotes {
    /// Records `node`'s (incarnation, counter); false if it did not grow
    /// (a replayed or reordered request).
    fn admit(&mut self, node: &str, incarnation: u64, counter: u64) -> bool {
        let seq = (incarnation, counter);
        if self.last.get(node).is_some_and(|last| *last >= seq) {
            return false;
        }
        self.last.insert(node.to_string(), seq);
        true
    }
}

/// The vote keeper of one arbitrator.
#[derive(Debug)]
pub struct Arbiter {
    vote: Duration,
    clusters: HashMap<String, ClusterVotes>,
}

impl Arbiter {
    /// An arbitrator whose votes last `vote`.
    pub fn new(vote: Duration) -> Self {
        Self {
            vote,
            clusters: HashMap::new(),
        }
    }

    /// How long a vote lasts.
    pub fn vote(&self) -> Duration {
        self.vote
    }

    /// Handles node `node` of `cluster` asking for the vote at `now`.
    pub fn request(
        &mut self,
        now: Timestamp,
        cluster: &str,
        node: &str,
        incarnation: u64,
        counter: u64,
    ) -> Decision {
        let c = self.clusters.entry(cluster.to_string()).or_default();
        if !c.admit(node, incarnation, counter) {
            return Decision::Replayed;
        }
        match &c.holder {
            Some((holder, until)) if holder != node && *until > now => Decision::Refused {
                holder: holder.clone(),
            },
            prev => {
                let changed = prev.as_ref().is_none_or(|(h, _)| h != node);
                c.holder = Some((node.to_string(), now + self.vote));
                Decision::Granted { changed }
            }
        }
    }

    /// Node `node` of `cluster` gives the vote back (its peers are back);
    /// returns whether it held it. Replays change nothing.
    pub fn release(&mut self, cluster: &str, node: &str, incarnation: u64, counter: u64) -> bool {
        let c = self.clusters.entry(cluster.to_string()).or_default();
        if !c.admit(node, incarnation, counter) {
            return false;
        }
        if c.holder.as_ref().is_some_and(|(h, _)| h == node) {
            c.holder = None;
            return true;
        }
        false
    }

    /// Seeds the latest (incarnation, counter) a previous run admitted from
    /// `node` of `cluster`, so its requests replayed after a restart are
    /// refused.
    pub fn remember(&mut self, cluster: &str, node: &str, incarnation: u64, counter: u64) {
        let c = self.clusters.entry(cluster.to_string()).or_default();
        let seq = (incarnation, counter);
        if c.last.get(node).is_none_or(|last| *last < seq) {
            c.last.insert(node.to_string(), seq);
        }
    }

    /// Who holds the vote of `cluster` at `now`, if anyone.
    pub fn holder(&self, now: Timestamp, cluster: &str) -> Option<&str> {
        self.clusters
            .get(cluster)
            .and_then(|c| c.holder.as_ref())
            .filter(|(_, until)| *until > now)
            .map(|(h, _)| h.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn one_holder_at_a_time_until_the_vote_lapses() {
        let mut a = Arbiter::new(Duration::from_secs(2));
        assert_eq!(
            a.request(at(0), "web", "n1", 1, 1),
            Decision::Granted { changed: true }
        );
        assert_eq!(
            a.request(at(10), "web", "n2", 5, 1),
            Decision::Refused {
                holder: "n1".into()
            }
        );
        // Renewal by the holder.
        assert_eq!(
            a.request(at(1000), "web", "n1", 1, 2),
            Decision::Granted { changed: false }
        );
        assert_eq!(
            a.request(at(2500), "web", "n2", 5, 2),
            Decision::Refused {
                holder: "n1".into()
            }
        );
        // Lapsed: n2 gets it.
        assert_eq!(
            a.request(at(3001), "web", "n2", 5, 3),
            Decision::Granted { changed: true }
        );
        assert_eq!(a.holder(at(3001), "web"), Some("n2"));
        // A release by a node that does not hold it changes nothing; by
        // the holder, it frees the vote at once.
        assert!(!a.release("web", "n1", 1, 3));
        assert!(a.release("web", "n2", 5, 4));
        assert_eq!(a.holder(at(3002), "web"), None);
        assert_eq!(
            a.request(at(3003), "web", "n1", 1, 4),
            Decision::Granted { changed: true }
        );
        // Other clusters are independent.
        assert_eq!(
            a.request(at(3001), "db", "n1", 1, 1),
            Decision::Granted { changed: true }
        );
    }

    #[test]
    fn replays_change_nothing() {
        let mut a = Arbiter::new(Duration::from_secs(2));
        assert!(matches!(
            a.request(at(0), "web", "n1", 3, 9),
            Decision::Granted { .. }
        ));
        assert_eq!(a.request(at(5000), "web", "n1", 3, 9), Decision::Replayed);
        assert_eq!(a.request(at(5000), "web", "n1", 2, 100), Decision::Replayed);
        assert_eq!(a.holder(at(5000), "web"), None);
        // A restarted node (higher incarnation) starts its counter again.
        assert!(matches!(
            a.request(at(5000), "web", "n1", 4, 1),
            Decision::Granted { .. }
        ));
    }
}
