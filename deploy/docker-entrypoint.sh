#!/bin/sh
# Entrypoint of the vault-proxy container image.
#
#   docker run IMAGE [vault-server flags...]    start the server (the default)
#   docker run IMAGE vault-server [flags...]    the same
#   docker run IMAGE COMMAND [args...]          run another command (vault-cli, sh, ...)
#
# The server listens on $VAULT_PROXY_LISTEN (default 0.0.0.0:8390) with its data in
# $VAULT_PROXY_DATA_DIR (default /data). vault-server refuses a non-loopback address without TLS, so
# when the address needs TLS and no certificate was given (VAULT_PROXY_TLS_CERT / --tls-cert), this
# script makes a self-signed EC P-256 certificate once, in $VAULT_PROXY_TLS_DIR (default
# $VAULT_PROXY_DATA_DIR/tls), reuses it on every later start, and prints its SHA-256 fingerprint.
# A cert.pem + key.pem you put in that directory yourself are used as they are.
#
# Settings read only by this script (every other VAULT_PROXY_* variable goes to vault-server as is):
#   VAULT_PROXY_AUTO_TLS   auto (default): a certificate when an address needs one; always: also for
#                          loopback-only addresses; never: leave TLS to the flags you give
#   VAULT_PROXY_TLS_DIR    where the generated certificate lives (default $VAULT_PROXY_DATA_DIR/tls)
#   VAULT_PROXY_TLS_SAN    extra subjectAltName entries, e.g. "DNS:vault.example.com,IP:192.0.2.10"
#   VAULT_PROXY_TLS_DAYS   validity of a generated certificate in days (default 825)
# See docs/deployment.md.
set -eu

say() { printf 'vault-proxy: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [ "$#" -gt 0 ] && [ "$1" = vault-server ]; then
    shift
elif [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"  # not a flag: a command of the user's choosing
fi

: "${VAULT_PROXY_DATA_DIR:=/data}"
: "${VAULT_PROXY_LISTEN:=0.0.0.0:8390}"
: "${VAULT_PROXY_TLS_DIR:=$VAULT_PROXY_DATA_DIR/tls}"
: "${VAULT_PROXY_TLS_DAYS:=825}"
: "${VAULT_PROXY_TLS_SAN:=}"
: "${VAULT_PROXY_AUTO_TLS:=auto}"
export VAULT_PROXY_DATA_DIR VAULT_PROXY_LISTEN
umask 077

# What the server will see: --listen flags replace VAULT_PROXY_LISTEN (as click does), a --tls-cert
# flag means the user brings the certificate, -h/--help needs no set-up at all.
listen_args=""
cert_arg=""
prev=""
for arg in "$@"; do
    case $prev in
        --listen) listen_args="$listen_args,$arg" ;;
        --tls-cert) cert_arg=$arg ;;
    esac
    case $arg in
        --listen=*) listen_args="$listen_args,${arg#--listen=}" ;;
        --tls-cert=*) cert_arg=${arg#--tls-cert=} ;;
        -h | --help) exec vault-server "$@" ;;
    esac
    prev=$arg
done
listen=${listen_args:-$VAULT_PROXY_LISTEN}

# Does any address need TLS? Unix sockets and loopback addresses do not (vault-server's own rule;
# an address this misjudges as needing TLS only gets a certificate it could do without).
needs_tls=no
old_ifs=$IFS
IFS=,
set -f  # split on commas only, no globbing
for address in $listen; do
    address=$(printf '%s' "$address" | tr -d ' \t')
    case $address in
        "" | unix:* | 127.* | localhost:* | "[::1]:"* | :*) ;;
        *) needs_tls=yes ;;
    esac
done
set +f
IFS=$old_ifs
case $VAULT_PROXY_AUTO_TLS in
    auto) ;;
    always) needs_tls=yes ;;
    never) needs_tls=no ;;
    *) die "VAULT_PROXY_AUTO_TLS must be auto, always or never (not '$VAULT_PROXY_AUTO_TLS')" ;;
esac

fingerprint() {
    openssl x509 -noout -fingerprint -sha256 -in "$1" | sed 's/^[^=]*=//'
}

generate_cert() {  # $1 = directory; writes cert.pem and key.pem there
    dir=$1
    host=$(uname -n 2>/dev/null || true)
    san="DNS:localhost,IP:127.0.0.1,IP:::1"
    case $host in
        "" | localhost | *[!A-Za-z0-9.-]*) ;;  # nothing usable as a DNS name
        *) san="$san,DNS:$host" ;;
    esac
    if [ -n "$VAULT_PROXY_TLS_SAN" ]; then
        san="$san,$VAULT_PROXY_TLS_SAN"
    fi
    work=$(mktemp -d "$dir/.new.XXXXXX")
    cat >"$work/openssl.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = vault-proxy self-signed
[ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = $san
CNF
    if ! openssl req -x509 -config "$work/openssl.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -nodes -sha256 -days "$VAULT_PROXY_TLS_DAYS" -keyout "$work/key.pem" -out "$work/cert.pem" 2>"$work/err"; then
        cat "$work/err" >&2
        rm -rf "$work"
        die "could not generate a TLS certificate in $dir"
    fi
    mv "$work/key.pem" "$dir/key.pem"
    mv "$work/cert.pem" "$dir/cert.pem"
    rm -rf "$work"
    say "generated a self-signed TLS certificate for $san (valid $VAULT_PROXY_TLS_DAYS days)"
}

cert=${cert_arg:-${VAULT_PROXY_TLS_CERT:-}}
if [ -z "$cert" ] && [ "$needs_tls" = yes ]; then
    dir=$VAULT_PROXY_TLS_DIR
    if [ -f "$dir/cert.pem" ] || [ -f "$dir/key.pem" ]; then
        if [ ! -f "$dir/cert.pem" ] || [ ! -f "$dir/key.pem" ]; then
            die "$dir holds only one of cert.pem and key.pem: add the other, or remove both to get a new certificate"
        fi
        if ! openssl x509 -noout -checkend 0 -in "$dir/cert.pem" >/dev/null 2>&1; then
            subject=$(openssl x509 -noout -subject -nameopt RFC2253 -in "$dir/cert.pem" 2>/dev/null || true)
            if [ "$subject" = "subject=CN=vault-proxy self-signed" ] && [ -w "$dir" ]; then
                say "the self-signed certificate in $dir has expired: making a new one (clients must trust it again)"
                generate_cert "$dir"
            else
                say "WARNING: the certificate $dir/cert.pem has expired or cannot be read"
            fi
        fi
    else
        if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
            die "cannot write $dir as uid $(id -u): the data volume must be writable by this user" \
                "(for a bind mount: chown $(id -u) the host directory)"
        fi
        generate_cert "$dir"
    fi
    VAULT_PROXY_TLS_CERT=$dir/cert.pem
    VAULT_PROXY_TLS_KEY=$dir/key.pem
    export VAULT_PROXY_TLS_CERT VAULT_PROXY_TLS_KEY
    cert=$VAULT_PROXY_TLS_CERT
fi

if [ -n "$cert" ] && [ -r "$cert" ]; then
    if sha=$(fingerprint "$cert" 2>/dev/null) && [ -n "$sha" ]; then
        say "TLS certificate $cert"
        say "SHA-256 fingerprint $sha"
        if ! openssl x509 -noout -checkend 2592000 -in "$cert" >/dev/null 2>&1; then
            say "WARNING: this certificate expires within 30 days ($(openssl x509 -noout -enddate -in "$cert" | sed 's/^[^=]*=//'))"
        fi
    fi
fi

exec vault-server "$@"
