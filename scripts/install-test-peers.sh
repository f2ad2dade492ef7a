#!/usr/bin/env bash
# Install the Debian packages whose daemons the integration tests run as real peers, when missing.
#
# Idempotent and quick when everything is present (only a few `test -x`, no apt, no root needed).
# Installing needs root (CI runs as root); as a normal user it names what is missing and exits 1.
# Daemons are never auto-started by the install: /usr/sbin/policy-rc.d `exit 101` is put in place
# for the install when absent and removed again afterwards (an existing one is left as it is).
#
# apt-get update runs only when there are no package lists or the install fails with the current
# ones (stale lists give 404s / "Unable to locate package"). Measured here (Debian 12, 2 cores, root):
# installing openssh-server (+ openssh-sftp-server, libwrap0, runit-helper, openssh-client upgrade,
# mostly dpkg configure and the postinst's /etc/ssh host keys) took 7.4 s wall with the existing lists;
# `apt-get update` alone took 0.9 s, so it is not run up front. Everything present: ~3 ms.
# dovecot-imapd (+ dovecot-core with /usr/sbin/dovecot and /usr/bin/doveadm, liblua5.4-0,
# libexttextcat: 5 packages, 6 MB) took 15.7 s wall; postgresql-15 came with the image.
set -euo pipefail

# One "package:file-it-provides" entry per peer binary; add more here.
PEERS=(
    "openssh-server:/usr/sbin/sshd"
    "openssh-client:/usr/bin/ssh-keygen"
    "redis-server:/usr/bin/redis-server"
    "dovecot-imapd:/usr/lib/dovecot/imap"
    "dovecot-core:/usr/sbin/dovecot"
    "postgresql-15:/usr/lib/postgresql/15/bin/postgres"
    # Tools the documentation's examples use (tests/integration/test_docs_examples.py runs them).
    "postgresql-client-15:/usr/bin/psql"
    "redis-tools:/usr/bin/redis-cli"
    "curl:/usr/bin/curl"
    "jq:/usr/bin/jq"
)

missing=()
for entry in "${PEERS[@]}"; do
    [ -x "${entry#*:}" ] || missing+=("${entry%%:*}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

say() { echo "install-test-peers: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "missing test peers: ${missing[*]}"
    say "install them as root: DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
fi
if ! command -v apt-get > /dev/null; then
    say "missing test peers: ${missing[*]}, and no apt-get here to install them"
    exit 1
fi

POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if [ "$created_policy" -eq 1 ]; then rm -f "$POLICY"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ ! -e "$POLICY" ]; then
    created_policy=1
    printf '#!/bin/sh\n# Temporary, from install-test-peers.sh: do not start daemons on install.\nexit 101\n' > "$POLICY"
    chmod 0755 "$POLICY"
fi

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o DPkg::Lock::Timeout=120 "${missing[@]}"
}

start=$(date +%s.%N)
say "installing ${missing[*]}"
if ! compgen -G '/var/lib/apt/lists/*_Packages*' > /dev/null; then
    apt-get update -q
    apt_install
elif ! apt_install; then
    say "install failed with the current package lists; running apt-get update and retrying"
    apt-get update -q
    apt_install
fi

for entry in "${PEERS[@]}"; do
    if [ ! -x "${entry#*:}" ]; then
        say "${entry%%:*} installed but ${entry#*:} is still missing"
        exit 1
    fi
done
say "done in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
