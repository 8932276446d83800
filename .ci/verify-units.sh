#!/usr/bin/env bash
# Verify the systemd user units exactly as `todod install-units` writes them.
#
#   .ci/verify-units.sh [TODOD]    # TODOD: the todod command (default: todod on PATH)
#
# Fails on ANY output of `systemd-analyze --user verify`, not only on its exit
# status: systemd 252 merely warns (and exits 0) about unknown keys, bad
# values and most mistakes in a unit.
#
# Everything the user manager would read lives in a temporary directory:
# XDG_RUNTIME_DIR (without it `systemd-analyze --user` cannot start its
# manager, e.g. as root or without a login session), XDG_CONFIG_HOME (so the
# units go to the default ~/.config/systemd/user there and no units of the
# person running this get in the way) and XDG_DATA_HOME.  --man=no: the units
# name no man pages, and CI images often have no `man`.
set -euo pipefail

todod=${1:-$(command -v todod || true)}
if [[ -z $todod ]]; then
    echo "verify-units: no todod: pass its path, or activate the venv" >&2
    exit 2
fi
if ! command -v systemd-analyze >/dev/null; then
    echo "verify-units: systemd-analyze is not installed" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -m 0700 "$tmp/run" "$tmp/config" "$tmp/data"
export XDG_RUNTIME_DIR="$tmp/run" XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data"
units="$XDG_CONFIG_HOME/systemd/user"

"$todod" install-units >/dev/null
status=0
output=$(systemd-analyze --user --man=no verify "$units/todod.socket" "$units/todod.service" 2>&1) || status=$?
if [[ -n $output || $status -ne 0 ]]; then
    echo "verify-units: systemd-analyze verify failed (exit status $status):" >&2
    echo "$output" >&2
    exit 1
fi
echo "verify-units: todod.socket and todod.service verified"
