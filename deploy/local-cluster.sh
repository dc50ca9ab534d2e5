#!/usr/bin/env bash
# A local three-node Lattice cluster for trying scale-out on one machine: a temporary PostgreSQL and Redis on free
# loopback ports, and three gateway nodes sharing them. Everything lives in one temporary directory, removed on exit.
# Ctrl-C (or SIGTERM) stops it all. See docs/deploy.md.
#
#   deploy/local-cluster.sh                  # builds the gateway from this checkout (Release) the first time
#   LATTICE_GATEWAY=/opt/lattice/gateway/Lattice.Gateway deploy/local-cluster.sh   # a published gateway
#   LATTICE_GATEWAY=path/to/Lattice.Gateway.dll deploy/local-cluster.sh            # or its dll
#
# Needs: PostgreSQL's server programs (initdb, postgres), redis-server, curl, and the .NET SDK or runtime.
# Settings (environment): LATTICE_NODES (3; 0 starts PostgreSQL and Redis only), LATTICE_BASE_PORT (first node's port; default: free ports),
# LATTICE_CLUSTER_DIR (where the temporary directory goes; default: $TMPDIR or /tmp), LATTICE_KEEP=1 (keep it on exit).
set -euo pipefail

nodes=${LATTICE_NODES:-3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${LATTICE_CLUSTER_DIR:-${TMPDIR:-/tmp}}/lattice-cluster.XXXXXX")
pids=()

say() { printf '%s\n' "$*"; }
fail() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }

stop() {
    trap - EXIT INT TERM
    say "Stopping…"
    # The gateways first (they flush their ledgers into PostgreSQL), then the stores.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    if [[ "${LATTICE_KEEP:-}" == 1 ]]; then
        say "Kept $work"
    else
        rm -rf "$work"
    fi
    say "Stopped."
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free TCP port on 127.0.0.1 (bash's /dev/tcp: a port that answers is taken), chosen below the kernel's ephemeral
# range, so no outgoing connection (of this machine's other programs or tests) takes it between this probe and the
# server's bind.
free_port() {
    local low=20000 high=32767 ephemeral_low ephemeral_high port
    if read -r ephemeral_low ephemeral_high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
        if ((ephemeral_low - 1 >= low + 1000)); then
            high=$((ephemeral_low - 1))
        elif ((ephemeral_high < 64535)); then
            low=$((ephemeral_high + 1)) high=65535
        fi
    fi
    while :; do
        port=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s' "$port"
            return
        fi
    done
}
port_of() { # $1: node index from 0
    if [[ -n "${LATTICE_BASE_PORT:-}" ]]; then printf '%s' $((LATTICE_BASE_PORT + $1)); else free_port; fi
}
up_within() { # $1: a process id, $2: seconds, then a command that succeeds once it is up; 1 when it exited, 2 when too slow
    local pid=$1 seconds=$2
    shift 2
    for ((t = 0; t < seconds * 5; t++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 2
}
wait_for() { # $1: what, $2: its process id, $3: seconds, then a command that succeeds once it is up
    local what=$1 status=0
    up_within "${@:2}" || status=$?
    ((status == 0)) && return 0
    LATTICE_KEEP=1
    ((status == 1)) && fail "$what exited while starting (logs in $work)"
    fail "$what did not start within ${3}s (logs in $work)"
}
# Starts a server on a free port, set in $port: $1 what, $2 its log, $3 seconds, $4 its ready line, $5 a function that
# starts it in the background on port $1. A port taken by another program between the probe and the bind
# ("Address already in use" in the log) is given up for another, twice at most.
start_on_free_port() {
    local what=$1 log=$2 seconds=$3 ready=$4 start=$5 status
    for attempt in 1 2 3; do
        port=$(free_port)
        "$start" "$port"
        pids+=($!)
        status=0
        up_within "${pids[-1]}" "$seconds" grep -q "$ready" "$log" || status=$?
        ((status == 0)) && return 0
        ((status == 1)) && grep -q "Address already in use" "$log" && ((attempt < 3)) && continue
        break
    done
    LATTICE_KEEP=1
    ((status == 1)) && fail "$what exited while starting (logs in $work)"
    fail "$what did not start within ${seconds}s (logs in $work)"
}

# ---- PostgreSQL: initdb in the temporary directory, loopback only, trust on loopback (a throwaway cluster) ----
pg_bin=""
for dir in "$(pg_config --bindir 2>/dev/null || true)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) $(dirname "$(command -v postgres 2>/dev/null || echo /nonexistent/x)"); do
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/postgres" ]]; then pg_bin=$dir; break; fi
done
[[ -n "$pg_bin" ]] || fail "PostgreSQL's server programs (initdb, postgres) were not found; apt-get install postgresql"
command -v redis-server >/dev/null || fail "redis-server was not found; apt-get install redis-server"
command -v curl >/dev/null || fail "curl was not found"

as_pg=()
if [[ $(id -u) == 0 ]]; then
    # PostgreSQL refuses to run as root: its programs run as the postgres user (Debian's package creates it).
    id postgres >/dev/null 2>&1 || fail "running as root needs a 'postgres' user for the database server"
    as_pg=(setpriv --reuid postgres --regid postgres --init-groups --)
    mkdir -p "$work/pg"
    chown postgres:postgres "$work/pg"
    chmod 755 "$work"
fi
say "PostgreSQL: initdb in $work/pg …"
(cd "$work" && "${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U lattice --auth=trust --encoding=UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1) \
    || fail "initdb failed: $(tail -5 "$work/initdb.log")"
start_postgres() {
    (cd "$work/pg" && exec "${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg/data" -h 127.0.0.1 -p "$1" -k "$work/pg" \
        -c fsync=off -c max_connections=200 >"$work/postgres.log" 2>&1) &
}
start_on_free_port PostgreSQL "$work/postgres.log" 60 "database system is ready to accept connections" start_postgres
pg_port=$port
database="postgres://lattice@127.0.0.1:$pg_port/postgres"

# ---- Redis: nothing saved to disk (see docs/scale-out.md for what a restart loses) ----
start_redis() {
    (cd "$work" && exec redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1) &
}
start_on_free_port Redis "$work/redis.log" 30 "Ready to accept connections" start_redis
redis_port=$port

if ((nodes == 0)); then
    # The stores only, for nodes run some other way (the benchmark's --scaleout uses this).
    say "LATTICE_STORES=$database 127.0.0.1:$redis_port"
    say "LATTICE_CLUSTER_READY"
    wait -n "${pids[@]}" || true
    LATTICE_KEEP=1
    exit 1
fi

# ---- The gateway program ----
gateway=${LATTICE_GATEWAY:-}
if [[ -z "$gateway" ]]; then
    gateway="$here/src/Gateway/Lattice.Gateway/bin/Release/net10.0/Lattice.Gateway.dll"
    if [[ ! -f "$gateway" ]]; then
        say "Building the gateway (Release) …"
        dotnet build "$here/src/Gateway/Lattice.Gateway" -c Release -v quiet -nologo >"$work/build.log" 2>&1 || fail "the build failed: $work/build.log"
    fi
fi
[[ -e "$gateway" ]] || fail "no gateway at $gateway"
run_gateway=("$gateway")
[[ "$gateway" == *.dll ]] && run_gateway=(dotnet "$gateway")

# ---- Three nodes: the same database, Redis and admin key; one data directory for all (they share its OAuth and
# cookie keys, and each takes a usage journal of its own in it). Started at once: one migrates, the others wait. ----
admin_key="sk_admin_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The secret the nodes share for forwarding requests for a runtime linked to another node (docs/scale-out.md).
cluster_secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$work/data"
urls=()
node_pids=()
for ((n = 0; n < nodes; n++)); do
    port=$(port_of "$n")
    urls+=("http://127.0.0.1:$port")
    Lattice__Database="$database" \
    Lattice__Redis="127.0.0.1:$redis_port" \
    Lattice__AdminKey="$admin_key" \
    Lattice__Cluster__Secret="$cluster_secret" \
    Lattice__Cluster__NodeUrl="http://127.0.0.1:$port" \
    Lattice__DataDirectory="$work/data" \
    Lattice__PublicUrl="http://127.0.0.1:$port" \
    ASPNETCORE_URLS="http://127.0.0.1:$port" \
    Logging__LogLevel__Default=Warning \
    DOTNET_NOLOGO=1 \
    "${run_gateway[@]}" >"$work/node$((n + 1)).log" 2>&1 &
    pids+=($!)
    node_pids+=($!)
done
for ((n = 0; n < nodes; n++)); do
    wait_for "Node $((n + 1))" "${node_pids[n]}" 180 curl -fsS "${urls[n]}/healthz"
done

# ---- A workspace and a developer key to try it with (through node 1's admin API) ----
admin() { curl -fsS -H "Authorization: Bearer $admin_key" -H 'content-type: application/json' "$@"; }
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
workspace=$(admin -d '{"name":"local cluster"}' "${urls[0]}/admin/v1/workspaces" | json_field id)
[[ -n "$workspace" ]] || fail "could not create a workspace (see $work/node1.log)"
api_key=$(admin -d '{"name":"local cluster"}' "${urls[0]}/admin/v1/workspaces/$workspace/keys" | json_field key)
[[ -n "$api_key" ]] || fail "could not create a developer key (see $work/node1.log)"

say ""
say "  Lattice: $nodes gateway nodes on one PostgreSQL and one Redis."
say ""
for ((n = 0; n < nodes; n++)); do
    say "  Node $((n + 1))     ${urls[n]}/v1   (log: $work/node$((n + 1)).log)"
done
say "  PostgreSQL $database"
say "  Redis      127.0.0.1:$redis_port"
say "  Admin key  $admin_key"
say "  API key    $api_key   (workspace $workspace)"
say ""
say "  Try it (any node):"
say "    curl ${urls[1]}/v1/models -H \"Authorization: Bearer $api_key\""
say "  Add a model or link a runtime with the admin key: docs/admin.md, docs/daemon.md."
say ""
say "  Press Ctrl-C to stop."
for ((n = 0; n < nodes; n++)); do
    say "LATTICE_NODE_URL=${urls[n]}"
done
say "LATTICE_ADMIN_KEY=$admin_key"
say "LATTICE_API_KEY=$api_key"
say "LATTICE_CLUSTER_READY"

# Until a signal, or until a process of the cluster ends on its own.
wait -n "${pids[@]}" || true
say "A process of the cluster ended on its own (logs in $work)."
LATTICE_KEEP=1
exit 1
