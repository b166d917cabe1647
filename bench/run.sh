#!/usr/bin/env bash
# Runs a benchmark in release mode: bench/run.sh heartbeat [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
command -v busybox >/dev/null 2>&1 || need+=(busybox)
command -v keepalived >/dev/null 2>&1 || need+=(keepalived)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v nbdfuse >/dev/null 2>&1 || need+=(libnbd-bin)
command -v qemu-nbd >/dev/null 2>&1 || need+=(qemu-utils)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
[ -x /etc/init.d/haproxy ] || need+=(haproxy)
[ -x /etc/init.d/stunnel4 ] || need+=(stunnel4)
[ -d /usr/lib/ocf/resource.d/heartbeat ] || need+=(resource-agents)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
name=${1:?usage: bench/run.sh heartbeat [--seconds N] | failover [--runs N] | lease [--runs N] [--seconds S] | volumes [--seconds S] [--size-mib M] | postgres [--runs N] | balancer [--runs N] | attack [--seconds N]}; shift
cargo build --release -p tandem -p tandem-bench
exec "target/release/$name" "$@"
