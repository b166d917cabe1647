//! A TCP forwarder from this machine into a lab host's network: the demo
//! lets a browser on the machine open the nodes' web consoles, which listen
//! inside the lab's namespaces.
//!
//! The listening socket is opened here; a thread then enters the lab
//! host's namespace ([`crate::netns::enter`]), so every connection it
//! opens to the target lives there, and copies bytes both ways.

use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::Context;

/// Forwards connections to `listen` (on this machine) to `target` as seen
/// from namespace `netns`, until the process ends. Returns the address
/// actually bound.
pub fn forward(listen: SocketAddr, netns: &str, target: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listen on {listen}"))?;
    let bound = listener.local_addr()?;
    let netns = netns.to_string();
    std::thread::Builder::new()
        .name(format!("forward-{}", bound.port()))
        .spawn(move || {
            if crate::netns::enter(&netns).is_err() {
                return;
            }
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || copy(client, server));
                std::thread::spawn(move || copy(s2, c2));
            }
        })
        .context("start the forwarder")?;
    Ok(bound)
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}
