#!/usr/bin/env bash
# Runs a command (make test: `cargo test`) in a network namespace of its own where only
# loopback is up, so that no packet leaves 127.0.0.1 even when an address check under test
# is broken: the hostile tests' fetches of 10.0.0.1 or 169.254.169.254 then fail with
# "Network is unreachable" instead of reaching a real network. The emulator, the function
# processes it starts and the tests' servers all live on 127.0.0.1 and work as before.
#
#   infra/loopback_only.sh <command> [args...]
#
# Build first: nothing inside reaches a package registry (cargo runs with CARGO_NET_OFFLINE).
# As root the namespace is `unshare --net`; otherwise `unshare --map-root-user --net` (a user
# namespace), where the kernel allows it. Where neither works the script stops, unless
# IMGPIPE_NO_NETNS=1 is set, which runs the command on the host's network, with a warning.
set -euo pipefail

fail() {
    echo "loopback_only: $*" >&2
    exit 1
}

if [[ "${1:-}" == --inside ]]; then
    shift
    command -v ip >/dev/null || fail "'ip' is missing (Debian/Ubuntu: apt-get install -y iproute2)"
    ip link set lo up
    # The claim, measured: a connection to an address off loopback fails at once (a timeout
    # would mean that a route out exists).
    for address in 10.0.0.1 192.168.0.1 169.254.169.254 100.64.0.1 1.1.1.1; do
        status=0
        timeout 2 bash -c "exec 3<>/dev/tcp/$address/80" 2>/dev/null || status=$?
        case $status in
            0) fail "$address:80 accepted a connection inside the namespace" ;;
            124) fail "a connection to $address:80 did not fail at once inside the namespace" ;;
        esac
    done
    echo "loopback_only: in a network namespace with only loopback (checked: 10.0.0.1, 192.168.0.1," \
        "169.254.169.254, 100.64.0.1 and 1.1.1.1 unreachable)" >&2
    export CARGO_NET_OFFLINE=true
    exec "$@"
fi

[[ $# -gt 0 ]] || fail "usage: infra/loopback_only.sh <command> [args...]"
if [[ "${IMGPIPE_NO_NETNS:-}" == 1 ]]; then
    echo "loopback_only: IMGPIPE_NO_NETNS=1: running on this host's network; only the code under" \
        "test keeps the hostile tests' private addresses from being fetched" >&2
    exec "$@"
fi
self=$(realpath "$0")
if unshare --net true 2>/dev/null; then
    exec unshare --net -- "$self" --inside "$@"
elif unshare --map-root-user --net true 2>/dev/null; then
    exec unshare --map-root-user --net -- "$self" --inside "$@"
fi
fail "cannot make a network namespace here (it needs root, or unprivileged user namespaces)." \
    "Run the tests as root (sudo -E make test), or set IMGPIPE_NO_NETNS=1 to run them on this" \
    "host's network, where only the code under test keeps their private addresses from being fetched."
