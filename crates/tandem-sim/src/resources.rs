//! The resources the simulated agents run: which node really runs what,
//! injected agent faults, and the "never active twice" check.

use tandem_core::Brain;

use crate::{AgentFaults, Sim};

impl Sim {
    /// Whether node `i` serves what it runs: its resources run and its
    /// lease is valid (the kernel drops a VIP's traffic once the lease
    /// lapses, frozen daemon or not).
    pub(crate) fn serving(&self, i: usize, g: usize, r: usize) -> bool {
        let node = &self.nodes[i];
        node.running
            .get(g)
            .and_then(|v| v.get(r))
            .copied()
            .unwrap_or(false)
            && node
                .brain
                .as_ref()
                .and_then(Brain::lease_until)
                .is_some_and(|u| u > self.now)
    }

    /// Records a violation if any resource is served by two nodes at once.
    pub(crate) fn check_exclusive(&mut self) {
        for (g, spec) in self.groups.iter().enumerate() {
            for r in 0..spec.resources.len() {
                let on: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.serving(i, g, r))
                    .collect();
                if on.len() > 1 && self.violations.len() < 10 {
                    self.violations.push(format!(
                        "at {:?}: {}/{} served by nodes {:?}",
                        self.now, spec.name, spec.resources[r].name, on
                    ));
                }
            }
        }
    }

    /// Sets the agent faults of node `i`.
    pub fn set_faults(&mut self, i: usize, f: AgentFaults) {
        if let Some(x) = self.faults.get_mut(i) {
            *x = f;
        }
    }

    /// Whether resource `r` of group `g` really runs on node `i`.
    pub fn is_running(&self, i: usize, g: usize, r: usize) -> bool {
        self.nodes
            .get(i)
            .and_then(|n| n.running.get(g))
            .and_then(|v| v.get(r))
            .copied()
            .unwrap_or(false)
    }

    /// Nodes on which resource `r` of group `g` really runs.
    pub fn running_on(&self, g: usize, r: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i, g, r))
            .collect()
    }

    /// Makes resource `r` of group `g` stop by itself on node `i` (a crash of
    /// the service, not of the node).
    pub fn kill_resource(&mut self, i: usize, g: usize, r: usize) {
        if let Some(x) = self
            .nodes
            .get_mut(i)
            .and_then(|n| n.running.get_mut(g))
            .and_then(|v| v.get_mut(r))
        {
            *x = false;
        }
    }

    /// As [`Sim::kill_resource`], and node `i`'s daemon sees the service's
    /// main process exit at once (its pidfd watcher) and tells its brain.
    /// A frozen node notices nothing; its monitors catch it later.
    pub fn kill_resource_seen(&mut self, i: usize, g: usize, r: usize) {
        self.kill_resource(i, g, r);
        let Some(spec) = self.groups.get(g) else {
            return;
        };
        let Some(rs) = spec.resources.get(r) else {
            return;
        };
        let key = tandem_core::ResourceKey {
            group: spec.name.clone(),
            resource: rs.name.clone(),
        };
        let now = self.now;
        match self.nodes.get_mut(i) {
            Some(n) if !n.frozen => {
                if let Some(b) = n.brain.as_mut() {
                    b.handle_main_exit(now, &key, "its main process exited".into());
                }
            }
            _ => return,
        }
        self.drain(i);
    }

    /// Sends an operator command to node `i` (an error message if the
    /// brain refuses it, or if the node is down or frozen).
    pub fn command(&mut self, i: usize, cmd: tandem_core::Command) -> Result<String, String> {
        let now = self.now;
        let r = match self.nodes.get_mut(i) {
            // Its control socket would not answer: the daemon is not running.
            Some(n) if n.frozen => Err("node is frozen".into()),
            Some(n) => match n.brain.as_mut() {
                Some(b) => b.handle_command(now, cmd).map_err(|e| e.to_string()),
                None => Err("node is down".into()),
            },
            None => Err("node is down".into()),
        };
        self.drain(i);
        r
    }

    /// Asks node `i` to leave cleanly (SIGTERM).
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        if let Some(b) = self.nodes.get_mut(i).and_then(|n| n.brain.as_mut()) {
            b.leave(now);
        }
        self.drain(i);
    }
}
