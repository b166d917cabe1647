//! tandem's test tooling, kept out of the shipped binary: the lab of
//! network namespaces ([`netns`]), a cluster of real `tandem` daemons in it
//! with a floating IP, a web server and a probing client ([`lab_cluster`]),
//! a cluster of daemons on loopback addresses that needs no root
//! ([`loopback_cluster`]), two nodes replicating a volume under tandem
//! ([`volume_cluster`]), an attacker on the heartbeat network
//! ([`attacker`]), S2's haproxy + stunnel balancer ([`balancer`]), a headless Chromium for the web console
//! ([`browser`]), and the live demo (`tandem-demo`).
//!
//! Used by `crates/tandem/tests`, the benchmarks in `bench/` and
//! `scripts/demo.sh`.

pub mod attacker;
pub mod balancer;
pub mod browser;
pub mod demo_loopback;
pub mod demo_volume;
pub mod forward;
pub mod lab_cluster;
pub mod loopback_cluster;
pub mod netns;
pub mod pg_client;
pub mod poll;
pub mod stall;
pub mod stress;
pub mod volume_cluster;
