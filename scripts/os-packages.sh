#!/usr/bin/env bash
# Installs the OS programs the tests and `gateway cluster` run, when they are missing:
# nginx and PgBouncer (Debian/Ubuntu packages, non-interactive apt-get). Idempotent: with
# everything present it installs nothing and says so in one line. As root it runs apt-get
# itself; otherwise through sudo when sudo is there (never waiting for a password without a
# terminal). apt-get's output goes to a log file, shown only when something fails. Exits 0
# even when something could not be installed, after naming it: the commands that need it say
# so again when they start. Add a package by adding a "package:program" pair below.
# `os-packages.sh bench` also installs what only the benchmark uses (the OCI distribution
# registry, its peer; `make bench` asks for it, the tests never do).
set -uo pipefail

WANTED=(
    "nginx:nginx"
    "pgbouncer:pgbouncer"
    # The web UI's browser tests drive Debian's Chromium (and chromedriver, for Selenium).
    "chromium:chromium"
    "chromium-driver:chromedriver"
)
if [ "${1:-}" = "bench" ]; then
    WANTED+=("docker-registry:docker-registry")
fi

# Programs in sbin are not on every user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
for pair in "${WANTED[@]}"; do
    have "${pair#*:}" || missing+=("${pair%%:*}")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "os-packages: present: ${WANTED[*]%%:*}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "os-packages: cannot install ${missing[*]}: no apt-get here; install them with your" \
         "system's package manager" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    if [ -t 0 ]; then as_root=(sudo); else as_root=(sudo -n); fi
else
    echo "os-packages: cannot install ${missing[*]}: not root and no sudo; as root run:" \
         "apt-get install ${missing[*]}" >&2
    exit 0
fi

log="$(mktemp "${TMPDIR:-/tmp}/os-packages.XXXXXX.log")"
echo "os-packages: installing ${missing[*]} (apt-get; log in $log)"
# Packages that start their service on install (nginx on port 80, pgbouncer on 6432,
# docker-registry on 5000) must not:
# the project runs its own instances. policy-rc.d is Debian's switch for that; an existing one
# is left as it is.
policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -e "$policy" ]; then
    if printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null 2>>"$log" \
            && "${as_root[@]}" chmod 755 "$policy" 2>>"$log"; then
        added_policy=1
    fi
fi
cleanup() { [ -n "$added_policy" ] && "${as_root[@]}" rm -f "$policy"; }
trap cleanup EXIT

apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
     -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
# A fresh machine may have no package lists yet: update once, and only when installing.
"${apt[@]}" update >>"$log" 2>&1
"${apt[@]}" install --no-install-recommends "${missing[@]}" >>"$log" 2>&1

still=()
for pair in "${WANTED[@]}"; do
    have "${pair#*:}" || still+=("${pair%%:*}")
done
if [ ${#still[@]} -eq 0 ]; then
    echo "os-packages: installed ${missing[*]}"
    rm -f "$log"
else
    echo "os-packages: could not install ${still[*]}; the last lines of $log:" >&2
    tail -n 15 "$log" >&2
fi
exit 0
