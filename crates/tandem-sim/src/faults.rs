//! Faults the simulation injects: link loss, delay and duplication,
//! partitions, crashes, daemon restarts, freezes.

use tandem_core::Brain;

use crate::{LinkModel, Sim};

impl Sim {
    /// Sets link `l`'s behaviour.
    pub fn set_link(&mut self, l: usize, model: LinkModel) {
        if let Some(m) = self.links.get_mut(l) {
            *m = model;
        }
    }

    /// Link `l`'s behaviour.
    pub fn link(&self, l: usize) -> LinkModel {
        self.links.get(l).copied().unwrap_or_default()
    }

    /// Splits the cluster: nodes in `side` no longer reach the others, and
    /// the others no longer reach them (on every link).
    pub fn partition(&mut self, side: &[usize]) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                if side.contains(&a) != side.contains(&b) {
                    self.blocked[a][b] = true;
                }
            }
        }
    }

    /// Drops datagrams from `a` to `b` only (an asymmetric fault).
    pub fn block(&mut self, a: usize, b: usize) {
        if let Some(row) = self.blocked.get_mut(a)
            && let Some(x) = row.get_mut(b)
        {
            *x = true;
        }
    }

    /// Pulls (or, with `out = false`, plugs back) node `i`'s cable on link
    /// `l`: nothing it sends or receives on that link arrives.
    pub fn unplug(&mut self, i: usize, l: usize, out: bool) {
        if let Some(x) = self.unplugged.get_mut(i).and_then(|r| r.get_mut(l)) {
            *x = out;
        }
    }

    /// Removes every partition and block.
    pub fn heal(&mut self) {
        for row in &mut self.blocked {
            row.iter_mut().for_each(|x| *x = false);
        }
    }

    /// Crashes node `i` (a power-off): its brain and its resources are
    /// gone, datagrams to it are lost.
    pub fn crash(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.brain = None;
            n.frozen = false;
            n.inbox.clear();
            n.results.clear();
            n.running
                .iter_mut()
                .for_each(|g| g.iter_mut().for_each(|r| *r = false));
        }
    }

    /// Crashes only node `i`'s daemon: its resources keep running.
    pub fn crash_daemon(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.brain = None;
            n.frozen = false;
            n.inbox.clear();
            n.results.clear();
        }
    }

    /// Restarts a crashed node with a new, larger incarnation.
    pub fn restart(&mut self, i: usize) {
        let now = self.now;
        if i >= self.nodes.len() {
            return;
        }
        self.nodes[i].incarnation += 1;
        let cfg = self.node_config(i);
        let node = &mut self.nodes[i];
        node.brain = Some(Brain::new(cfg, now));
        node.frozen = false;
        node.inbox.clear();
    }

    /// Freezes node `i` (SIGSTOP): it runs nothing; datagrams to it queue.
    pub fn freeze(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.frozen = true;
        }
    }

    /// Thaws node `i` (SIGCONT): it reads its queued datagrams, then runs on.
    pub fn thaw(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        node.frozen = false;
        let inbox = std::mem::take(&mut node.inbox);
        let results = std::mem::take(&mut node.results);
        if let Some(b) = node.brain.as_mut() {
            for (link, bytes) in inbox {
                b.handle_datagram(now, link, &bytes);
            }
            for (id, r) in results {
                b.handle_op_result(now, id, r);
            }
        }
        self.drain(i);
    }

    /// Node `i`'s daemon reports whether its copy of `group`'s data is
    /// ready (`None`) or why not (its volume watcher does this).
    pub fn set_data_readiness(&mut self, i: usize, group: &str, hold: Option<&str>) {
        self.set_data_state(i, group, hold, false);
    }

    /// As [`Sim::set_data_readiness`], saying also whether the copy is
    /// durably unfit (`stale`: Outdated or Inconsistent).
    /// A frozen daemon hears nothing: the report is dropped (its glue
    /// reports again once it runs).
    pub fn set_data_state(&mut self, i: usize, group: &str, hold: Option<&str>, stale: bool) {
        let now = self.now;
        let live = self.nodes.get_mut(i).filter(|n| !n.frozen);
        if let Some(b) = live.and_then(|n| n.brain.as_mut()) {
            b.handle_data_readiness(now, group, hold.map(str::to_string), stale);
        }
        self.drain(i);
    }
}
