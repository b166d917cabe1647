#!/usr/bin/env bash
# Builds the Debian package: target/debian/tandem_VERSION-1_ARCH.deb (the
# binary, systemd units, example configuration, man pages, completions,
# logrotate snippet). Installs cargo-deb first if it is missing.
#   ./scripts/package.sh              # release build
#   TANDEM_PACKAGE_PROFILE=dev ./scripts/package.sh   # reuse a debug build (the test suite does)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${TANDEM_PACKAGE_PROFILE:-release}
case "$profile" in
    dev) dir=debug ;;
    *) dir=$profile ;;
esac
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "== installing cargo-deb"
    cargo install cargo-deb --locked --version '^3' --no-default-features
fi
cargo build --profile "$profile" -p tandem --bin tandem --locked
bin=target/$dir/tandem
out=target/tandem-package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man "$out/man" >/dev/null
"$bin" completions bash > "$out/completions/tandem"
"$bin" completions zsh > "$out/completions/_tandem"
"$bin" completions fish > "$out/completions/tandem.fish"
cargo deb -p tandem --no-build --profile "$profile" --output target/debian/ "$@"
ls target/debian/*.deb
