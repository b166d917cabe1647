//! Witness probes (two-node clusters, scenario S5): at failover only, is
//! any witness host reachable? ICMP echo through the system's `ping`, or a
//! TCP connection. Runs on threads of its own, never on the heartbeat
//! thread.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use tandem_config::{Witness, WitnessKind};

/// Runs witness probes and reports (probe id, reachable).
pub struct Prober {
    witness: Option<Witness>,
    results: Sender<(u64, bool)>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Prober {
    /// A prober for `witness` (none configured: every probe fails).
    pub fn new(
        witness: Option<Witness>,
        results: Sender<(u64, bool)>,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            witness,
            results,
            wake: Arc::from(wake),
        }
    }

    /// Starts probe `id`: every witness at once; reachable if any answers.
    pub fn probe(&self, id: u64) {
        let (w, tx, wake) = (
            self.witness.clone(),
            self.results.clone(),
            self.wake.clone(),
        );
        std::thread::spawn(move || {
            let reachable = w.is_some_and(|w| {
                let handles: Vec<_> = w
                    .addresses
                    .iter()
                    .map(|a| {
                        let (a, kind, t) = (*a, w.kind.clone(), w.timeout);
                        std::thread::spawn(move || match kind {
                            WitnessKind::Tcp(port) => {
                                TcpStream::connect_timeout(&SocketAddr::new(a, port), t).is_ok()
                            }
                            WitnessKind::Icmp => {
                                let secs = format!("{:.3}", t.as_secs_f64().max(0.001));
                                matches!(
                                    tandem_agents::exec::run(
                                        "ping",
                                        &["-n", "-q", "-c", "1", "-W", &secs, &a.to_string()],
                                        &Default::default(),
                                        t + std::time::Duration::from_millis(500),
                                    ),
                                    tandem_agents::exec::Exit::Code(0, _)
                                )
                            }
                        })
                    })
                    .collect();
                handles.into_iter().any(|h| h.join().unwrap_or(false))
            });
            tracing::info!(
                "witness probe {id}: {}",
                if reachable {
                    "reachable"
                } else {
                    "unreachable"
                }
            );
            let _ = tx.send((id, reachable));
            wake();
        });
    }
}
