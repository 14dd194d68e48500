#!/usr/bin/env bash
# The full-flow benchmark as three processes: smsmax bench -> smsmax serve
# -> smsmax sim, receipts back to the bench. Reports the bench's numbers and
# each process's peak RSS (GNU time). Not run by CI.
#
#   scripts/bench-e2e.sh [MESSAGES] [BINDS] [WINDOW]
#
# Needs a release build (cargo build --release) and /usr/bin/time (Debian: time).
# SIM_WINDOW sets the sim's deliver_sm window (default 256); SMSMAX_* variables
# reach serve as config overrides (e.g. SMSMAX_RELAY__CONCURRENCY=1024).
set -euo pipefail
cd "$(dirname "$0")/.."

messages="${1:-1000000}"
binds="${2:-4}"
window="${3:-256}"
bin="${SMSMAX_BIN:-${CARGO_TARGET_DIR:-target}/release/smsmax}"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin missing)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

work="$(mktemp -d)"
cleanup() {
    [ -n "${serve_pid:-}" ] && pkill -TERM -P "$serve_pid" 2>/dev/null || true
    [ -n "${sim_pid:-}" ] && pkill -TERM -P "$sim_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port="$(free_port)"
smpp_port="$(free_port)"

/usr/bin/time -v -o "$work/sim.time" "$bin" sim --listen "127.0.0.1:$sim_port" \
    --receipt-delay-ms 100 --receipt-jitter-ms 400 --window ${SIM_WINDOW:-256} \
    --mix delivrd=95,undeliv=3,expired=1,rejectd=1 --log-level warn >"$work/sim.out" 2>&1 &
sim_pid=$!

hash="$(printf 'benchpw\n' | "$bin" passwd)"
cat >"$work/serve.toml" <<TOML
[smpp]
listen = "127.0.0.1:$smpp_port"
response_timeout_secs = 10

[storage]
data_dir = "$work/data"

[log]
level = "warn"

[[clients]]
system_id = "bench"
password_hash = "$hash"
allowed_networks = ["127.0.0.0/8"]
max_binds = $((binds * 2))
throughput = 10000000
window = $window

[[upstreams]]
name = "sim"
host = "127.0.0.1"
port = $sim_port
system_id = "smsmax"
password = "simpw"
binds = 4
window = 256
response_timeout_ms = 10000

[[routes]]
prefix = ""
upstreams = [{ name = "sim" }]

[relay]
idle_poll_ms = 10

[outbox]
window = 256
batch = 2048
retry_min_ms = 200
retry_max_ms = 5000
TOML
/usr/bin/time -v -o "$work/serve.time" "$bin" serve --config "$work/serve.toml" >"$work/serve.out" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$smpp_port") 2>/dev/null && break
    sleep 0.1
done

/usr/bin/time -v -o "$work/bench.time" "$bin" bench --addr "127.0.0.1:$smpp_port" --system-id bench \
    --password benchpw --binds "$binds" --window "$window" --count "$messages" --receipts \
    --receipt-timeout 600 --quiet || status=$?

# Signal the programs, not GNU time (it must live to write their figures).
pkill -TERM -P "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
pkill -TERM -P "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
serve_pid=; sim_pid=
echo
for p in bench serve sim; do
    printf '%-6s peak RSS %s kB, CPU user %s s, sys %s s\n' "$p" \
        "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/$p.time")" \
        "$(awk -F': ' '/User time/ {print $2}' "$work/$p.time")" \
        "$(awk -F': ' '/System time/ {print $2}' "$work/$p.time")"
done
echo "sim summary:"; tail -20 "$work/sim.out"
exit "${status:-0}"
