#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, simulation,
# loopback and network-namespace tests. Run from anywhere; as root the
# namespace (lab) tests run too, and they fail loudly when they cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

# The lab tests use namespaces (iproute2), a real web server (busybox httpd),
# real OCF agents (resource-agents), ICMP witnesses (ping), kernel leases
# (nftables), a private D-Bus for the systemd agent's tests (dbus-daemon)
# CPU load for the lease drills (stress-ng), and the volume drills' tools.
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v busybox >/dev/null 2>&1 || need+=(busybox)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v nft >/dev/null 2>&1 || need+=(nftables)
[ -x /usr/lib/ocf/resource.d/heartbeat/Dummy ] || need+=(resource-agents)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
command -v qemu-io >/dev/null 2>&1 || need+=(qemu-utils)
command -v nbdinfo >/dev/null 2>&1 || need+=(libnbd-bin)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(mount)
# The PostgreSQL drill: Debian's server and client, and modprobe, which the
# real ocf:heartbeat:Filesystem agent insists on finding.
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v modprobe >/dev/null 2>&1 || need+=(kmod)
# The operator surface: HAProxy health-checking /active/GROUP, the console
# in a real headless Chromium, TLS certificates, and promtool's check of
# the metrics text.
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# S2's balancer with Debian's own init scripts (issue 16).
[ -x /etc/init.d/stunnel4 ] || need+=(stunnel4)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The package check: man, the completion shells, lintian.
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# Pacemaker's sample alert agents (data files only), run by the alerts test.
[ -e /usr/share/pacemaker/alerts/alert_file.sh.sample ] || need+=(pacemaker-common)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${need[*]} for the lab tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A full build needs about 3 GB; say so up front rather than let the linker
# die of a full disk half-way.
echo "== disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free where target/ is built"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo check (fuzz targets, so they cannot rot)"
cargo check --manifest-path fuzz/Cargo.toml --locked
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
if [ "$(id -u)" = 0 ]; then
    echo "== the Debian package (scripts/check-package.sh)"
    ./scripts/check-package.sh
else
    echo "== the Debian package: NOT CHECKED (needs root for dpkg --root); run as root"
    exit 1
fi
