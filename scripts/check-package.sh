#!/usr/bin/env bash
# The Debian package, checked as an administrator would meet it: built by
# scripts/package.sh (from the debug build, to save time), its control data
# and contents, installed with dpkg into a fresh root (maintainer scripts
# included), the binary run from there, every man page rendered, the
# completion scripts through their shells' syntax checks, the units through
# `systemd-analyze verify`, lintian, and removal refused while the node runs
# a group. Needs root (dpkg --root). Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-package: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg --root)"

TANDEM_PACKAGE_PROFILE=dev ./scripts/package.sh >/tmp/tandem-package.log 2>&1 || { cat /tmp/tandem-package.log; fail "package build"; }
deb=$(ls -t target/debian/tandem_*.deb | head -1)
echo "== $deb"

# Control data.
info=$(dpkg-deb -I "$deb")
grep -q '^ Package: tandem$' <<<"$info" || fail "no Package: tandem"
grep -q '^ Section: admin$' <<<"$info" || fail "section"
grep -q '^ Depends: .*iproute2' <<<"$info" || fail "Depends lacks iproute2"
grep -q '^ Recommends: .*nftables' <<<"$info" || fail "Recommends lacks nftables"

# Contents.
contents=$(dpkg-deb -c "$deb")
want=(
    "-rwxr-xr-x .* ./usr/sbin/tandem$"
    "-rw------- .* ./etc/tandem/tandem.toml$"
    "./etc/logrotate.d/tandem$"
    "/systemd/system/tandem.service$"
    "/systemd/system/tandem-witness.service$"
    "./usr/share/man/man8/tandem.8"
    "./usr/share/man/man8/tandem-daemon.8"
    "./usr/share/man/man5/tandem.toml.5"
    "./usr/share/bash-completion/completions/tandem$"
    "./usr/share/zsh/vendor-completions/_tandem$"
    "./usr/share/fish/vendor_completions.d/tandem.fish$"
    "./usr/share/doc/tandem/copyright$"
    "./usr/share/doc/tandem/examples/tandem.toml$"
)
for w in "${want[@]}"; do
    grep -qE -- "$w" <<<"$contents" || fail "the package lacks $w"
done
echo "   control data and $(wc -l <<<"$contents") entries checked"

# Install into a fresh root. Maintainer scripts run outside a chroot with
# DPKG_ROOT set (dpkg's chrootless mode), so the root needs no shell.
root=$(mktemp -d /tmp/tandem-root.XXXXXX)
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkg_r() { dpkg --root="$root" --force-script-chrootless --force-depends --force-not-root "$@"; }
out=$(dpkg_r -i "$deb" 2>&1) || { echo "$out"; fail "dpkg -i"; }
grep -q "installed but not started" <<<"$out" || fail "postinst did not say the daemon is not started: $out"
pgrep -f "$root/usr/sbin/tandem daemon" >/dev/null && fail "installing started the daemon"
[ "$(stat -c %a "$root/var/lib/tandem")" = 700 ] || fail "/var/lib/tandem is not mode 700"
[ "$(stat -c %a "$root/etc/tandem/tandem.toml")" = 600 ] || fail "tandem.toml is not mode 600"
dpkg_r -s tandem | grep -q '^ /etc/tandem/tandem.toml ' || fail "tandem.toml is not a conffile"
"$root/usr/sbin/tandem" --help | grep -q "Quick start" || fail "tandem --help"
"$root/usr/sbin/tandem" --version | grep -q "wire protocol" || fail "tandem --version"
echo "   installed with dpkg into $root; not started; conffile and modes right"

# Man pages render; completions pass their shells' syntax checks.
pages=0
for p in "$root"/usr/share/man/man*/*; do
    MANWIDTH=80 man -l "$p" 2>/dev/null | grep -q "^NAME" || fail "man -l $p"
    pages=$((pages + 1))
done
bash -n "$root/usr/share/bash-completion/completions/tandem" || fail "bash completion syntax"
zsh -n "$root/usr/share/zsh/vendor-completions/_tandem" || fail "zsh completion syntax"
fish --no-execute "$root/usr/share/fish/vendor_completions.d/tandem.fish" || fail "fish completion syntax"
echo "   $pages man pages render; bash, zsh and fish completions parse"

# Units.
# The targets the units refer to come from this machine's systemd; the
# Documentation= pages are checked against the package's own man pages.
units=$(find "$root" -name 'tandem*.service')
unitdir=$(dirname "$(head -1 <<<"$units")")
for t in /lib/systemd/system/*.target; do [ -e "$unitdir/$(basename "$t")" ] || cp "$t" "$unitdir/"; done
SYSTEMD_LOG_LEVEL=warning systemd-analyze --root="$root" --man=no verify $units >/tmp/tandem-units.log 2>&1 || true
cat /tmp/tandem-units.log
[ -s /tmp/tandem-units.log ] && fail "systemd-analyze verify complained"
for m in $(grep -ho 'man:[^ ]*' $units); do
    page=${m#man:}; name=${page%(*}; sec=${page##*(}; sec=${sec%)}
    ls "$root/usr/share/man/man$sec/$name.$sec"* >/dev/null 2>&1 || fail "$m (in a unit's Documentation=) is not in the package"
done
echo "   systemd-analyze verify: clean; every Documentation= page is in the package"

# lintian: errors fail; every remaining warning is listed in docs/packaging.md.
lintian --tag-display-limit 0 "$deb" >/tmp/tandem-lintian.log 2>&1 || true
cat /tmp/tandem-lintian.log
grep -q '^E: ' /tmp/tandem-lintian.log && fail "lintian errors"
while read -r tag; do
    grep -q -- "$tag" docs/packaging.md || fail "lintian tag $tag is not explained in docs/packaging.md"
done < <(sed -nE 's/^W: tandem[^:]*: ([a-z0-9-]+).*/\1/p' /tmp/tandem-lintian.log | sort -u)
echo "   lintian: no errors; warnings explained"

# Removal is refused while this node runs a group.
"$root/usr/sbin/tandem" keygen "$root/etc/tandem/authkey" >/dev/null
cat >"$root/etc/tandem/tandem.toml" <<EOF
cluster = "pkg"
key_file = "$root/etc/tandem/authkey"
socket = "$root/run/tandem.sock"
state_dir = "$root/var/lib/tandem"
realtime = false
[timing]
initdead = "1s"
[[link]]
name = "lo"
kind = "ucast"
port = 7697
[[node]]
name = "n1"
addresses = { lo = "127.0.96.11" }
[[group]]
name = "web"
[[group.resource]]
name = "daemon"
agent = "process"
params = { command = "sleep 1000000" }
EOF
"$root/usr/sbin/tandem" daemon --config "$root/etc/tandem/tandem.toml" --node n1 >"$root/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
    "$root/usr/sbin/tandem" status --json --config "$root/etc/tandem/tandem.toml" 2>/dev/null | grep -q '"phase_here": "started"' && break
    sleep 0.1
done
"$root/usr/sbin/tandem" status --json --config "$root/etc/tandem/tandem.toml" | grep -q '"phase_here": "started"' || { cat "$root/daemon.log"; fail "the test group did not start"; }
out=$(dpkg_r -r tandem 2>&1) && fail "removal was allowed while the node runs a group"
grep -q "runs 1 resource group" <<<"$out" || fail "removal refused without the reason: $out"
[ -x "$root/usr/sbin/tandem" ] || fail "a refused removal removed the binary"
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true; daemon_pid=
TANDEM_FORCE_REMOVE=1 dpkg_r -r tandem >/dev/null 2>&1 || fail "forced removal"
[ ! -e "$root/usr/sbin/tandem" ] || fail "removal left the binary"
dpkg_r --purge tandem >/dev/null 2>&1 || fail "purge"
[ ! -e "$root/var/lib/tandem" ] || fail "purge left /var/lib/tandem"
echo "   removal refused while a group runs (with the reason), allowed when forced; purge cleans up"
echo "check-package: OK"
