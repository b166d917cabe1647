//! The peers' connections: dialing (the lower node index dials),
//! pairing each peer's data and meta connections, and starting their
//! reader and writer threads.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use super::inbox::Inbox;
use super::net::Key;

use super::{Input, Link, Runner, net, outbox};

/// Dials `peer` whenever the engine wants a connection to it.
pub(super) fn net_dialer(
    name: &str,
    me: u8,
    peer: u8,
    to: std::net::SocketAddr,
    key: &Key,
    found: &Sender<(net::Hello, net::Conn)>,
    wants: &std::sync::Mutex<BTreeMap<u8, bool>>,
) {
    loop {
        let want = wants
            .lock()
            .map(|w| w.get(&peer).copied().unwrap_or(false))
            .unwrap_or(false);
        if want {
            let data = net::Conn::dial(to, name, me, false, key);
            let meta = data
                .as_ref()
                .ok()
                .map(|_| net::Conn::dial(to, name, me, true, key));
            match (data, meta) {
                (Ok(d), Some(Ok(m))) => {
                    let h = |meta| net::Hello {
                        volume: name.to_string(),
                        from: peer,
                        meta,
                        nonce: [0; 16],
                    };
                    let _ = found.send((h(false), d));
                    let _ = found.send((h(true), m));
                    // Wait until the engine wants a new connection.
                    if let Ok(mut w) = wants.lock() {
                        w.insert(peer, false);
                    }
                }
                (Err(e), _) | (_, Some(Err(e))) => {
                    tracing::debug!("volume {name}: dial {to}: {e}");
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Pairs each peer's data and meta connections.
pub(super) fn pair_connections(found: Receiver<(net::Hello, net::Conn)>, inbox: &Inbox) {
    let mut half: BTreeMap<u8, (bool, net::Conn)> = BTreeMap::new();
    while let Ok((h, c)) = found.recv() {
        match half.remove(&h.from) {
            Some((meta, other)) if meta != h.meta => {
                let (data, meta) = if h.meta { (other, c) } else { (c, other) };
                let _ = inbox.send(Input::Connected {
                    peer: h.from,
                    data,
                    meta,
                });
            }
            _ => {
                half.insert(h.from, (h.meta, c));
            }
        }
    }
}

impl Runner {
    pub(super) fn connect(&mut self, peer: u8, data: net::Conn, meta: net::Conn) {
        if !self.vol.wants_connection(peer) {
            data.shutdown();
            meta.shutdown();
            return;
        }
        self.drop_link(peer);
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut handles = Vec::new();
        let mut senders = Vec::new();
        for c in [data, meta] {
            if let Ok(h) = c.handle() {
                handles.push(h);
            }
            let Ok((w, mut r)) = c.split(self.key.clone()) else {
                return;
            };
            let (outbox, writer) = outbox::outbox(w);
            senders.push(outbox);
            let _ = std::thread::Builder::new()
                .name("tandem-vol-send".into())
                .spawn(move || writer.run());
            let inbox = self.inbox.clone();
            let _ = std::thread::Builder::new()
                .name("tandem-vol-recv".into())
                .spawn(move || {
                    loop {
                        match r.read() {
                            Ok(msg) => {
                                let input = Input::Received {
                                    peer,
                                    generation,
                                    msg,
                                };
                                if inbox.send(input).is_err() {
                                    return;
                                }
                            }
                            Err(_) => {
                                let _ = inbox.send(Input::Lost { peer, generation });
                                return;
                            }
                        }
                    }
                });
        }
        let (Some(meta_tx), Some(data_tx)) = (senders.pop(), senders.pop()) else {
            return;
        };
        self.links.insert(
            peer,
            Link {
                generation,
                data: data_tx,
                meta: meta_tx,
                handles,
            },
        );
        let now = self.now();
        self.vol.connected(now, peer);
    }

    pub(super) fn drop_link(&mut self, peer: u8) {
        if let Some(l) = self.links.remove(&peer) {
            for h in l.handles {
                let _ = h.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
