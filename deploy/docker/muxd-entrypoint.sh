#!/bin/sh
# The container's entrypoint: prepares muxd's configuration, then execs muxd (which
# becomes PID 1 and handles SIGTERM itself: it stops accepting, drains for up to 5 s per
# API and waits for its background writes).
#
#   MUXD_CONFIG  the TOML to run (default /etc/muxd/muxd.toml, mounted by the operator).
#   MUX_NODE_ID  muxd's [mux] node_id; when unset and POD_IP (an IPv4 address, from the
#                Kubernetes downward API) is set, it is that address as a 32-bit number,
#                unique among the pods running at one time.
#
# A config that contains `${MUX_…}` placeholders is a template: each is replaced by that
# environment variable (store URLs with credentials from a Secret, the node id) into a
# private file under $TMPDIR (default /tmp, which must be writable), and muxd runs on
# that copy; an unset variable stops the start with its name. Values are inserted as
# they are, so they must not contain `"` or newlines. Other arguments go to muxd
# (`muxd-entrypoint token --tenant acme` mints a development token).
set -eu

config=${MUXD_CONFIG:-/etc/muxd/muxd.toml}

if [ -z "${MUX_NODE_ID:-}" ] && [ -n "${POD_IP:-}" ]; then
    IFS=. read -r a b c d rest <<EOF
$POD_IP
EOF
    case "$a.$b.$c.$d.${rest:-}" in
    *[!0-9.]* | .* | *..*)
        echo "muxd-entrypoint: POD_IP=$POD_IP is not an IPv4 address: set MUX_NODE_ID (a unique u32) instead" >&2
        exit 64
        ;;
    esac
    if [ -n "${rest:-}" ] || [ "$a" -gt 255 ] || [ "$b" -gt 255 ] || [ "$c" -gt 255 ] || [ "$d" -gt 255 ]; then
        echo "muxd-entrypoint: POD_IP=$POD_IP is not an IPv4 address: set MUX_NODE_ID (a unique u32) instead" >&2
        exit 64
    fi
    MUX_NODE_ID=$(((a << 24) | (b << 16) | (c << 8) | d))
    export MUX_NODE_ID
fi

if [ ! -r "$config" ]; then
    echo "muxd-entrypoint: cannot read the configuration $config: mount a TOML there or set MUXD_CONFIG" >&2
    exit 66
fi

if grep -qF '${MUX_' "$config"; then
    rendered=$(mktemp "${TMPDIR:-/tmp}/muxd.XXXXXX")
    # POSIX awk (mawk in the image): replaces each ${MUX_NAME} by ENVIRON["MUX_NAME"].
    awk '
    {
        line = $0
        out = ""
        while (match(line, /\$\{MUX_[A-Za-z0-9_]+\}/)) {
            name = substr(line, RSTART + 2, RLENGTH - 3)
            if (!(name in ENVIRON)) {
                printf "muxd-entrypoint: %s is used in %s but not set\n", name, FILENAME > "/dev/stderr"
                bad = 1
            }
            out = out substr(line, 1, RSTART - 1) ENVIRON[name]
            line = substr(line, RSTART + RLENGTH)
        }
        print out line
    }
    END { exit bad }' "$config" >"$rendered"
    config=$rendered
fi

exec muxd --config "$config" "$@"
