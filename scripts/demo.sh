#!/usr/bin/env bash
# The live demo: installs what it needs (busybox for the web server,
# iproute2), builds tandem, and runs `tandem-demo` (crates/tandem-lab): a two-node cluster with a
# floating IP and a web server in network namespaces on this machine, a
# client probing it every 10 ms through a power-off, a failback and a move.
# `./scripts/demo.sh --volume`: PostgreSQL on a replicated volume keeps
# every committed row across a power-off and a failback (scenario S3).
# Needs root (it builds network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "run as root (e.g. sudo $0): the demo builds network namespaces" >&2
    echo "(without root: cargo build --release -p tandem -p tandem-lab && target/release/tandem-demo --loopback)" >&2
    exit 1
fi
need=()
command -v busybox >/dev/null 2>&1 || need+=(busybox)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
if [ "${1:-}" = "--volume" ]; then
    # Scenario S3: PostgreSQL on a replicated volume.
    [ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
    command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
    command -v modprobe >/dev/null 2>&1 || need+=(kmod)
    command -v losetup >/dev/null 2>&1 || need+=(mount)
    command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
    [ -x /usr/lib/ocf/resource.d/heartbeat/Filesystem ] || need+=(resource-agents)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -p tandem -p tandem-lab
exec target/release/tandem-demo "$@"
