//! The one conversion from a loaded [`Config`] to the brain's
//! [`BrainConfig`]: node ids, link labels, groups with their placement
//! rules, quorum, witness and fencing switches.

use tandem_core::{BrainConfig, GroupSpec, NodeId, PlacementRules, ResourceSpec};
use tandem_wire::Keyring;

use crate::{Config, WitnessKind};

/// The local node is not in the configuration.
#[derive(Debug, thiserror::Error)]
#[error(
    "node `{0}` is not configured; the [[node]] names are what `uname -n` prints on each machine"
)]
pub struct UnknownNode(pub String);

impl Config {
    /// The brain configuration of node `local`, signing with `keys`, this
    /// start's `incarnation`, and the peers' incarnations seen before it
    /// (`known`, by node name; unknown names are skipped).
    pub fn brain_config(
        &self,
        local: &str,
        keys: Keyring,
        incarnation: u64,
        known: &[(String, u64)],
    ) -> Result<BrainConfig, UnknownNode> {
        let (id, _) = self
            .node(local)
            .ok_or_else(|| UnknownNode(local.to_string()))?;
        let mut b = BrainConfig::new(
            &self.cluster,
            NodeId(id),
            self.nodes.iter().map(|n| n.name.clone()),
            (0..self.links.len()).map(|i| self.link_label(i)),
            self.timing,
            keys,
            incarnation,
        );
        b.config_digest = self.digest();
        b.quorum = self.quorum.clone();
        b.witness = self
            .witness
            .as_ref()
            .is_some_and(|w| !w.addresses.is_empty());
        b.witness_arbiter = self
            .witness
            .as_ref()
            .is_some_and(|w| matches!(w.kind, WitnessKind::Arbiter { .. }));
        b.fencing = self.fencing.is_some();
        b.known_incarnations = known
            .iter()
            .filter_map(|(name, inc)| Some((NodeId(self.node(name)?.0), *inc)))
            .collect();
        b.groups = self.groups.iter().map(|g| self.group_spec(g)).collect();
        Ok(b)
    }

    /// The brain's view of group `g` (its placement rules, resources,
    /// volumes): the one conversion, also used by `tandem explain`.
    pub fn group_spec(&self, g: &crate::Group) -> GroupSpec {
        GroupSpec {
            name: g.name.clone(),
            resources: g
                .resources
                .iter()
                .map(|r| ResourceSpec {
                    name: r.name.clone(),
                    start_timeout: r.start_timeout,
                    stop_timeout: r.stop_timeout,
                    monitor_interval: r.monitor_interval,
                    monitor_timeout: r.monitor_timeout,
                })
                .collect(),
            rules: PlacementRules {
                scores: g
                    .prefer
                    .iter()
                    .filter_map(|(n, s)| self.node(n).map(|(id, _)| (NodeId(id), *s)))
                    .collect(),
                stickiness: g.stickiness,
                auto_failback: g.auto_failback,
            },
            migration_threshold: g.migration_threshold,
            failure_timeout: g.failure_timeout,
            volumes: g
                .resources
                .iter()
                .filter_map(|r| match &r.agent {
                    crate::AgentKind::Volume { name } => Some(name.clone()),
                    _ => None,
                })
                .collect(),
        }
    }
}
