#!/usr/bin/env bash
# Two keyrail nodes behind nginx on one machine, sharing one PostgreSQL and one Redis: a
# cluster as it runs in production, small enough to try. See README.md next to this file.
#
#   examples/cluster/start.sh            # runs until Ctrl-C, then stops everything it started
#
# Settings (environment):
#   KEYRAIL_BIN   the keyrail binary            [target/release/keyrail; built when missing]
#   PG_URL        a PostgreSQL server URL        [postgres://postgres@127.0.0.1:5432]
#   DB_NAME       the database it creates/uses   [keyrail_cluster]
#   REDIS_URL     Redis                          [redis://127.0.0.1:6379/0]
#   LISTEN        nginx, the one address          [127.0.0.1:8000]
#   NODE_A NODE_B the nodes                       [127.0.0.1:8081, 127.0.0.1:8082]
#   WORK          where logs, the key file and nginx's files go [a new /tmp/keyrail-cluster.*]
#   ADMIN_EMAIL   the superuser `keyrail init` makes [admin@example.com]
#   READY_FILE    written with the JSON of `keyrail init` once everything answers (for scripts)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
KEYRAIL_BIN="${KEYRAIL_BIN:-$ROOT/target/release/keyrail}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
DB_NAME="${DB_NAME:-keyrail_cluster}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
LISTEN="${LISTEN:-127.0.0.1:8000}"
NODE_A="${NODE_A:-127.0.0.1:8081}"
NODE_B="${NODE_B:-127.0.0.1:8082}"
ADMIN_EMAIL="${ADMIN_EMAIL:-admin@example.com}"
WORK="${WORK:-$(mktemp -d /tmp/keyrail-cluster.XXXXXX)}"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: $*" >&2; exit 1; }

[[ -x "$NGINX" ]] || die "nginx is missing (Debian: apt-get install nginx)"
command -v psql >/dev/null || die "psql is missing (Debian: apt-get install postgresql-client)"
if [[ ! -x "$KEYRAIL_BIN" ]]; then
    say "building $KEYRAIL_BIN"
    (cd "$ROOT" && cargo build --release -q -p keyrail)
fi
mkdir -p "$WORK"

# One database for the cluster.
if ! psql "$PG_URL/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    psql "$PG_URL/postgres" -qc "CREATE DATABASE \"$DB_NAME\"" || die "cannot create database $DB_NAME"
fi

# What the nodes share: the database, Redis, the master key and the public URL (the issuer of
# tokens and the base of links). Not a data directory: each node has its own, and needs none of
# its contents.
umask 077
if [[ ! -s "$WORK/master.key" ]]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/master.key"
fi
export KEYRAIL_DATABASE_URL="$PG_URL/$DB_NAME"
export KEYRAIL_REDIS_URL="$REDIS_URL"
export KEYRAIL_MASTER_KEY_FILE="$WORK/master.key"
export KEYRAIL_PUBLIC_URL="http://$LISTEN"
export KEYRAIL_DEV=true                         # plain HTTP on loopback; mails to the log
export KEYRAIL_TRUSTED_PROXIES='["127.0.0.1"]'  # nginx's X-Forwarded-For names the client

"$KEYRAIL_BIN" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migrate failed"; }
printf 'cluster admin passphrase %s\n' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$WORK/admin-password"
KEYRAIL_DATA_DIR="$WORK/node-a" "$KEYRAIL_BIN" init --email "$ADMIN_EMAIL" --password-file "$WORK/admin-password" \
    >"$WORK/init.json" 2>"$WORK/init.log" || { cat "$WORK/init.log" >&2; die "init failed"; }

PIDS=()
stop() {
    say "stopping"
    [[ -f "$WORK/nginx/nginx.pid" ]] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

for node in a b; do
    addr="$NODE_A"
    [[ "$node" == b ]] && addr="$NODE_B"
    KEYRAIL_DATA_DIR="$WORK/node-$node" KEYRAIL_LISTEN="$addr" \
        "$KEYRAIL_BIN" serve >"$WORK/node-$node.log" 2>&1 &
    PIDS+=($!)
done

mkdir -p "$WORK/nginx"
sed -e "s/@LISTEN@/$LISTEN/" -e "s/@NODE_A@/$NODE_A/" -e "s/@NODE_B@/$NODE_B/" \
    "$HERE/nginx.conf" >"$WORK/nginx/nginx.conf"
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" \
    || die "nginx did not start: $(cat "$WORK/nginx/error.log" 2>/dev/null)"

answers() { curl -fsS -m 1 "http://$1/readyz" >/dev/null 2>&1; }
for _ in $(seq 1 100); do
    answers "$NODE_A" && answers "$NODE_B" && answers "$LISTEN" && break
    sleep 0.1
done
for addr in "$NODE_A" "$NODE_B" "$LISTEN"; do
    answers "$addr" || die "$addr does not answer /readyz; logs in $WORK"
done

[[ -n "${READY_FILE:-}" ]] && cp "$WORK/init.json" "$READY_FILE"
say "two nodes ($NODE_A, $NODE_B) on $KEYRAIL_DATABASE_URL and $REDIS_URL, behind http://$LISTEN"
say "superuser $ADMIN_EMAIL (passphrase in $WORK/admin-password); its API key: $(cat "$WORK/init.json")"
say "logs and the master key file in $WORK; Ctrl-C stops everything"
while true; do
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || die "a node stopped; see $WORK/node-*.log"
    done
    sleep 1
done
