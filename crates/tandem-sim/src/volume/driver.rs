//! The simulation loop: deliver messages, complete disk operations, carry
//! out every engine output with one exhaustive `match` (`drain`), keep
//! connections up where cables allow, and run the application.

use std::cmp::Reverse;
use std::time::Duration;

use rand::Rng;
use tandem_core::Timestamp;
use tandem_volumes::{ConnState, DiskState, Output, ReplState, Role, Volume, VolumeEvent};

use super::pattern::{self, SECTOR};
use super::{DiskOp, Ev, Link, VolumeSim};

/// Seeds to run: `TANDEM_SIM_SEED=N` runs just N, otherwise
/// `TANDEM_SIM_SEEDS=K` (default `default`) seeds from 1.
pub fn seeds_for_volumes(default: u64) -> Vec<u64> {
    crate::seeds(default)
}

impl VolumeSim {
    /// Carries out everything node `i`'s engine asks.
    pub(super) fn drain(&mut self, i: usize) {
        loop {
            let Some(out) = self.nodes[i].vol.as_mut().and_then(Volume::poll) else {
                return;
            };
            let life = self.nodes[i].life;
            let lat = |s: &mut Self, lo: u64, hi: u64| {
                s.now + Duration::from_micros(s.rng.random_range(lo..hi))
            };
            match out {
                Output::MetaWrite { io, meta } => self.meta_op(i, io, DiskOp::Meta { meta }),
                Output::DiskWrite {
                    io,
                    offset,
                    data,
                    fua,
                } => {
                    let at = lat(self, 20, 300);
                    let op = DiskOp::Write { offset, data, fua };
                    self.schedule(
                        at,
                        Ev::Disk {
                            node: i,
                            life,
                            io,
                            op,
                        },
                    );
                }
                Output::DiskRead { io, offset, len } => {
                    let at = lat(self, 20, 200);
                    let op = DiskOp::Read { offset, len };
                    self.schedule(
                        at,
                        Ev::Disk {
                            node: i,
                            life,
                            io,
                            op,
                        },
                    );
                }
                Output::DiskFlush { io } => {
                    let mark = self.nodes[i].disk.flush_mark();
                    let at = lat(self, 100, 800);
                    self.schedule(
                        at,
                        Ev::Disk {
                            node: i,
                            life,
                            io,
                            op: DiskOp::Flush { mark },
                        },
                    );
                }
                Output::Send { peer, msg } => {
                    let to = usize::from(peer);
                    let k = Self::key(i, to);
                    let Some(l) = self.links.get(&k).filter(|l| l.connected) else {
                        continue;
                    };
                    let session = l.session;
                    let at = self.channel_delay(i, to, &msg);
                    self.schedule(
                        at,
                        Ev::Deliver {
                            from: i,
                            to,
                            session,
                            msg,
                        },
                    );
                }
                Output::MeasureRoom => self.measure_room(i),
                Output::Grow { io, meta } => self.meta_op(i, io, DiskOp::Grow { meta }),
                Output::Disconnect { peer } => self.drop_connection(i, usize::from(peer)),
                Output::Complete { req, result } => self.completed(i, req, result.is_ok()),
                Output::Event(e) => self.event(i, e),
            }
        }
    }

    fn event(&mut self, i: usize, e: VolumeEvent) {
        if let VolumeEvent::ResyncStarted { source: false, .. } = &e {
            // Its data is replaced by the source's: earlier promises void.
            self.app.floor.remove(&i);
        }
        self.log.push((self.now, i, e.to_string()));
    }

    fn completed(&mut self, i: usize, req: u64, ok: bool) {
        if self.app.primary != Some(i) {
            return;
        }
        let Some((snapshot, covered)) = self.app.complete(req, ok) else {
            return;
        };
        let mut nodes = vec![i];
        for (peer, session) in covered {
            let k = Self::key(i, peer);
            if self
                .links
                .get(&k)
                .is_some_and(|l| l.connected && l.session == session)
            {
                nodes.push(peer);
            }
        }
        for n in nodes {
            let f = self
                .app
                .floor
                .entry(n)
                .or_insert_with(|| vec![0; snapshot.len()]);
            for (x, s) in f.iter_mut().zip(&snapshot) {
                *x = (*x).max(*s);
            }
        }
    }

    /// Runs until `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            self.connect_ready();
            self.app_step();
            let next_ev = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].vol.as_ref()?.poll_timeout().map(|t| (t, i)))
                .min();
            let next_app = self.now + Duration::from_micros(200);
            let t = [next_ev, next_timer.map(|x| x.0), Some(next_app)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until);
            if t > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(t);
            if next_ev == Some(t) {
                if let Some(Reverse((_, o))) = self.queue.pop()
                    && let Some(ev) = self.events.remove(&o)
                {
                    self.handle(ev);
                }
            } else if let Some((tt, i)) = next_timer
                && tt == t
            {
                let now = self.now;
                if let Some(v) = self.nodes[i].vol.as_mut() {
                    v.handle_timeout(now);
                }
                self.drain(i);
            }
        }
    }

    /// Runs for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Disk { node, life, io, op } => {
                if self.nodes[node].life != life || self.nodes[node].vol.is_none() {
                    return;
                }
                let disk = &mut self.nodes[node].disk;
                let result = match op {
                    DiskOp::Write { offset, data, fua } => {
                        disk.write(offset, &data, fua);
                        Ok(None)
                    }
                    DiskOp::Read { offset, len } => Ok(Some(disk.read(offset, len).into())),
                    DiskOp::Flush { mark } => {
                        disk.flushed(mark);
                        Ok(None)
                    }
                    DiskOp::Meta { meta } => {
                        disk.meta = Some(*meta);
                        Ok(None)
                    }
                    DiskOp::Grow { meta } => disk.grow(*meta).map(|()| None),
                };
                if let Some(v) = self.nodes[node].vol.as_mut() {
                    v.disk_done(now, io, result);
                }
                self.drain(node);
            }
            Ev::Deliver {
                from,
                to,
                session,
                msg,
            } => {
                let k = Self::key(from, to);
                if !self
                    .links
                    .get(&k)
                    .is_some_and(|l| l.connected && !l.silent && l.session == session)
                {
                    return;
                }
                let trap = self.trap.filter(|t| t.to == to && (t.pred)(&msg));
                if let Some(t) = trap {
                    self.trap = None;
                    if t.action == super::TrapAction::CutBefore {
                        self.break_link(from, to);
                        return;
                    }
                }
                if let Some(v) = self.nodes[to].vol.as_mut() {
                    v.received(now, from as u8, msg);
                }
                self.drain(to);
                if let Some(super::Trap {
                    action: super::TrapAction::CrashAfter(node),
                    ..
                }) = trap
                {
                    self.crash(node);
                }
            }
        }
    }

    /// Connects every pair whose cable is up and whose engines both want
    /// to.
    fn connect_ready(&mut self) {
        let keys: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for (a, b) in keys {
            let Some(l) = self.links.get(&(a, b)).cloned() else {
                continue;
            };
            let want = |s: &Self, x: usize, y: usize| {
                s.nodes[x]
                    .vol
                    .as_ref()
                    .is_some_and(|v| v.wants_connection(y as u8))
            };
            if !l.cable
                || l.silent
                || l.connected
                || self.now < l.retry_at
                || !want(self, a, b)
                || !want(self, b, a)
            {
                continue;
            }
            let session = l.session + 1;
            self.links.insert(
                (a, b),
                Link {
                    cable: true,
                    silent: false,
                    half_open: false,
                    connected: true,
                    session,
                    retry_at: l.retry_at,
                },
            );
            let now = self.now;
            for (x, y) in [(a, b), (b, a)] {
                if let Some(v) = self.nodes[x].vol.as_mut() {
                    v.connected(now, y as u8);
                }
            }
            self.drain(a);
            self.drain(b);
        }
    }

    /// The application issues a write or a flush now and then.
    fn app_step(&mut self) {
        let Some(p) = self.app.primary else { return };
        if self.app.stopped || self.app.outstanding.len() >= 4 || !self.rng.random_bool(0.3) {
            return;
        }
        let now = self.now;
        if self.rng.random_bool(0.15) {
            let covered = self.in_sync_peers(p);
            let req = self.app.start_flush(covered);
            if let Some(v) = self.nodes[p].vol.as_mut() {
                v.flush(now, req);
            }
        } else {
            let sectors = self.size / SECTOR;
            let len = SECTOR * self.rng.random_range(1..=16u64);
            let offset = SECTOR * self.rng.random_range(0..sectors - len / SECTOR);
            if !self.app.free(offset, len) {
                return;
            }
            let fua = self.rng.random_bool(0.1);
            let (req, writer) = self.app.start_write(offset, len);
            let data = pattern::data(writer, offset, len);
            if let Some(v) = self.nodes[p].vol.as_mut() {
                v.write(now, req, offset, data, fua);
            }
        }
        self.drain(p);
    }

    /// Peers of `p` that are connected and in sync, with their session.
    fn in_sync_peers(&self, p: usize) -> Vec<(usize, u64)> {
        let Some(v) = self.nodes[p].vol.as_ref() else {
            return Vec::new();
        };
        let st = v.status();
        (0..self.nodes.len())
            .filter(|q| *q != p)
            .filter(|q| {
                st.peers.iter().any(|ps| {
                    ps.node == format!("n{}", q + 1)
                        && ps.connection == ConnState::Connected
                        && ps.replication == ReplState::Established
                        && ps.out_of_sync_kib == 0
                })
            })
            .filter_map(|q| Some((q, self.links.get(&Self::key(p, q))?.session)))
            .collect()
    }

    // ---- operator actions and faults ----

    /// A write by hand (not the application's) of one 4 KiB block of
    /// `writer`'s pattern on node `i`, its outputs carried out.
    pub fn write_block(&mut self, i: usize, writer: u64, offset: u64) {
        let now = self.now;
        if let Some(v) = self.nodes[i].vol.as_mut() {
            v.write(
                now,
                writer,
                offset,
                super::pattern::data(writer, offset, 4096),
                false,
            );
        }
        self.drain(i);
    }

    /// `primary [--force]` on node `i`; on success the application writes
    /// there. Returns whether it was accepted.
    pub fn promote(&mut self, i: usize, force: bool) -> bool {
        let now = self.now;
        let ok = self.nodes[i]
            .vol
            .as_mut()
            .is_some_and(|v| v.promote(now, force).is_ok());
        if ok {
            self.app.primary = Some(i);
        }
        self.drain(i);
        ok
    }

    /// `secondary` on node `i` once its writes are done.
    pub fn demote(&mut self, i: usize) -> bool {
        if self.app.primary == Some(i) {
            self.app.primary = None;
        }
        let deadline = self.now + Duration::from_secs(5);
        while !self.app.outstanding.is_empty() && self.now < deadline {
            let t = self.now + Duration::from_millis(1);
            self.run_until(t);
        }
        self.try_demote(i)
    }

    /// `secondary` on node `i` now, without waiting for its writes (the
    /// application stops writing there); `false` while writes are still
    /// outstanding: call again later. For drivers that keep their own
    /// clock in step (`cluster`).
    pub fn try_demote(&mut self, i: usize) -> bool {
        if self.app.primary == Some(i) {
            self.app.primary = None;
        }
        let now = self.now;
        let ok = self.nodes[i]
            .vol
            .as_mut()
            .is_some_and(|v| v.demote(now).is_ok());
        self.drain(i);
        ok
    }

    /// Power loss of node `i`: unflushed writes may vanish; its engine is
    /// gone until [`VolumeSim::restart`]. If it was the primary, every
    /// secondary in sync is checked for every acknowledged write.
    pub fn crash(&mut self, i: usize) {
        let was_primary = self.app.primary == Some(i);
        if was_primary && self.protocol == tandem_volumes::Protocol::A {
            for (offset, len) in self.writes_on_the_wire(i) {
                self.app.lost_on_the_wire(offset, len);
            }
        }
        if was_primary && self.protocol == tandem_volumes::Protocol::C {
            for q in 0..self.nodes.len() {
                let in_sync = self.in_sync_peers(i).iter().any(|(x, _)| *x == q);
                if q != i && in_sync {
                    self.check_acknowledged(q, "after the primary crashed");
                }
            }
        }
        if was_primary {
            self.app.primary_lost();
        }
        let node = &mut self.nodes[i];
        node.vol = None;
        node.life += 1;
        let mut rng = std::mem::replace(&mut self.rng, rand::SeedableRng::seed_from_u64(0));
        self.nodes[i].disk.crash(&mut rng);
        self.rng = rng;
        self.check_floor(i);
        for j in 0..self.nodes.len() {
            if j != i {
                self.break_link(i, j);
            }
        }
    }

    /// Restarts node `i` from what its disk holds.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].vol.is_some() {
            return;
        }
        let Some(meta) = self.nodes[i].disk.meta.clone() else {
            return;
        };
        let now = self.now;
        // A new process draws a new seed for its generation identifiers,
        // as the real volume process does: identifiers never repeat across
        // lives.
        let mut cfg = self.cfgs[i].clone();
        cfg.uuid_seed = rand::Rng::random(&mut self.rng);
        self.nodes[i].vol = Some(Volume::attach(cfg, meta, now));
        self.drain(i);
    }

    // ---- checks ----

    /// Which write each sector of the volume (the application's size) holds on node `i`.
    fn sectors_of(&self, i: usize) -> Vec<u64> {
        let mut data = self.nodes[i].disk.contents();
        data.truncate(self.size as usize);
        data.chunks(SECTOR as usize)
            .enumerate()
            .map(|(s, c)| pattern::writer_of(s as u64, c))
            .collect()
    }

    /// Node `q` holds every acknowledged write.
    pub fn check_acknowledged(&mut self, q: usize, when: &str) {
        let got = self.sectors_of(q);
        for (s, w) in got.iter().enumerate() {
            if !self.app.acceptable(s, *w) {
                self.violations.push(format!(
                    "{when}: node n{} sector {s} holds write {w}, the last acknowledged is {}",
                    q + 1,
                    self.app.last_acked[s]
                ));
                return;
            }
        }
    }

    /// Node `q` holds every write a completed flush covered (anywhere): a
    /// copy about to be promoted must.
    pub fn check_flushed(&mut self, q: usize, when: &str) {
        let got = self.sectors_of(q);
        for (s, (w, f)) in got.iter().zip(&self.app.flushed).enumerate() {
            if *w == u64::MAX || *w < *f {
                self.violations.push(format!(
                    "{when}: node n{} sector {s} holds write {w}, a completed flush covered write {f}",
                    q + 1
                ));
                return;
            }
        }
    }

    /// After a crash: what completed flushes promised is durable.
    fn check_floor(&mut self, i: usize) {
        let Some(floor) = self.app.floor.get(&i).cloned() else {
            return;
        };
        let got = self.sectors_of(i);
        for (s, (w, f)) in got.iter().zip(&floor).enumerate() {
            if *w == u64::MAX || *w < *f {
                self.violations.push(format!(
                    "node n{} lost flushed data in its crash: sector {s} holds write {w}, a completed flush covered write {f}",
                    i + 1
                ));
                return;
            }
        }
    }

    /// Heals every cable, restarts every node, and waits (up to
    /// `within`) until every connection is established and in sync; then
    /// checks that every copy is identical and holds every acknowledged
    /// write. Returns whether it converged.
    pub fn converge(&mut self, within: Duration) -> bool {
        self.app.primary_keep();
        self.heal();
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        let deadline = self.now + within;
        while self.now < deadline {
            let t = self.now + Duration::from_millis(10);
            self.run_until(t);
            if self.all_in_sync() && self.app.outstanding.is_empty() {
                break;
            }
        }
        if !self.all_in_sync() {
            let states: Vec<String> = (0..self.nodes.len())
                .filter_map(|i| Some(self.nodes[i].vol.as_ref()?.status().render()))
                .collect();
            self.violations
                .push(format!("no convergence:\n{}", states.join("\n")));
            return false;
        }
        let first = self.contents(0);
        for i in 1..self.nodes.len() {
            if self.contents(i) != first {
                self.violations
                    .push(format!("n1 and n{} differ after resync", i + 1));
                return false;
            }
        }
        self.check_acknowledged(0, "after convergence");
        self.violations.is_empty()
    }

    /// Every node up, every connection established, nothing out of sync.
    pub fn all_in_sync(&self) -> bool {
        self.nodes.iter().all(|n| {
            n.vol.as_ref().is_some_and(|v| {
                let st = v.status();
                st.disk == DiskState::UpToDate
                    && st.peers.iter().all(|p| {
                        p.connection == ConnState::Connected
                            && p.replication == ReplState::Established
                            && p.out_of_sync_kib == 0
                    })
            })
        })
    }

    /// The node the application writes to.
    pub fn primary(&self) -> Option<usize> {
        self.app.primary
    }

    /// Nodes whose engine is primary right now.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                self.nodes[*i]
                    .vol
                    .as_ref()
                    .is_some_and(|v| v.role() == Role::Primary)
            })
            .collect()
    }
}
