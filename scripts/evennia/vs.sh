# Sourced by scripts/bench --vs-evennia (not run on its own): installs
# Evennia from PyPI in a venv under the bench's temporary directory, makes a
# game there with loopback-only bench settings (bench_settings.py beside this
# file), runs the same ev-loadgen workloads against it and fills ENF with its
# figures, by the same keys as ev's EVF. Uses scripts/bench's helpers (lg, j,
# say, msf, thousands, ms_since, now_ns, NOTES) and its WORK, LOG, BIN,
# PHASE_MS, LAT_S, THR_S, ADMIN_PW.
#
# Every loop and every command here is bounded in time; every process it
# starts is a child of `timeout` or is found again by its pidfile (and only
# killed if it runs from our venv) in evennia_cleanup.

EVW=$WORK/evennia          # the venv and the game
EVENV=$EVW/venv
EGAME=$EVW/game
EN_SEEN=""                 # every Evennia pid seen (server pids change on reload)
EN_VERSION="?"
EN_PW=Zq8vLx3mRt           # Django's password validators stay on: not like a name, 8+ chars
EN_PROBE_MS=1000           # Evennia's reload probes: see the note in evennia_markdown
EN_RELOADS=3
CMP=()

# The login grammar of Evennia's unlogged-in screen, and the probe: an
# unknown command (its reply carries the token). `say` would echo to every
# session in Limbo, where all the bench's characters stand: a broadcast.
EN_BASE=(--password "$EN_PW"
    --login-screen "If you have an existing account"
    --taken "that username is already taken"
    --login-failed "Username and/or password is incorrect" --login-failed "Usage:"
    --login-failed "Something went wrong"
    --probe 'xyzzy {token}' --reply "Command 'xyzzy {token}' is not available"
    --login-concurrency 16 --login-timeout-ms 60000)
EN_LOGIN=(--logged-in "You become ")
# `create` asks "Is this what you intended? [Y]/N?": the Y goes on the next
# line of the same send, and an account made is not logged in.
EN_CREATE=(--create $'create {name} {password}\nY' --logged-in "A new account '{name}' was created")

evennia_fail() {
    EVENNIA_FAILED=$1
    say "Evennia: $1 (the ev figures are still written)"
}

# evn SECONDS ARGS...: the evennia launcher in the game directory, bounded.
evn() {
    local t=$1
    shift
    # (the launcher runs `twistd` from PATH: the venv's bin goes first)
    (cd "$EGAME" && PATH=$EVENV/bin:$PATH exec timeout "$t" "$EVENV/bin/evennia" "$@" </dev/null) >>"$LOG" 2>&1
}

# Pids of Evennia's portal and server (the pidfiles have no newline).
en_pids() {
    local f pid
    for f in portal server; do
        pid=$(cat "$EGAME/server/$f.pid" 2>/dev/null) || continue
        case $pid in '' | *[!0-9]*) continue ;; esac
        case " $EN_SEEN " in *" $pid "*) ;; *) EN_SEEN="$EN_SEEN $pid" ;; esac
        echo "$pid"
    done
}
# True if PID runs from our venv (and is not a zombie).
en_ours() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$EVW/"
}
en_alive() {
    local n=0 pid
    for pid in $EN_SEEN; do en_ours "$pid" && n=$((n + 1)); done
    echo "$n"
}
en_up() {
    local pids
    pids=$(en_pids)
    [ "$(echo "$pids" | grep -c .)" = 2 ] || return 1
    for pid in $pids; do en_ours "$pid" || return 1; done
}
en_ensure_up() {
    en_up && return 0
    NOTES+=("Evennia was not running after $1; it was stopped and started again")
    say "Evennia is not running after $1: restarting it"
    evn 60 stop
    evn 120 start || return 1
    en_pids >/dev/null
}

# Waits (at most 120 s) until Evennia's server is idle again (under 10% of a
# core over a second): a run that overloaded it leaves a queue behind that
# would otherwise be counted against the next one.
en_settle() {
    local pid a b i
    pid=$(cat "$EGAME/server/server.pid" 2>/dev/null) || return 0
    for i in $(seq 1 120); do
        a=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || return 0
        sleep 1
        b=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || return 0
        if [ $((b - a)) -lt 10 ]; then
            [ "$i" -gt 1 ] && say "Evennia: its server was busy for $i s after $1"
            return 0
        fi
    done
    NOTES+=("Evennia's server was still busy 120 s after $1")
}

evennia_cleanup() {
    [ -x "$EVENV/bin/evennia" ] && [ -d "$EGAME/server" ] || return 0
    en_pids >/dev/null
    [ "$(en_alive)" = 0 ] && return 0
    evn 60 stop
    local pid
    for pid in $EN_SEEN; do en_ours "$pid" && kill -9 "$pid" 2>/dev/null; done
}

# Figures: ratio_lower EV EN → how many times lower ev is; ratio_higher the
# other way. "—" if either is not a number.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || a + 0 == 0 || b + 0 == 0) { print "—"; exit }
        r = b / a
        if (r >= 100) printf "%.0f×", r; else if (r >= 1) printf "%.1f×", r
        else printf "%.2f× (Evennia ahead)", r }'
}
ratio_lower() { ratio "$1" "$2"; }
ratio_higher() { ratio "$2" "$1"; }
cmp_row() {
    CMP+=("| $1 | ${2:-not measured} | ${3:-not measured} | $4 |")
    printf '  %-52s ev %s | Evennia %s | %s\n' "$1" "${2:-?}" "${3:-?}" "$4"
}

evennia_run() {
    local py="${EVENNIA_PYTHON:-}" t0 ports
    if [ -z "$py" ]; then
        local cand
        for cand in python3.11 python3.12 python3.13 python3; do
            command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null &&
                { py=$cand; break; }
        done
    fi
    [ -n "$py" ] || { evennia_fail "no Python 3.11 or newer found (Evennia 5 needs it; set EVENNIA_PYTHON)"; return; }
    mkdir -p "$EVW"
    say "Evennia: installing ${EVENNIA_SPEC:-evennia} from PyPI in a venv under $EVW ($py)"
    timeout 300 "$py" -m venv "$EVENV" >>"$LOG" 2>&1 || { evennia_fail "$py -m venv failed (see $LOG)"; return; }
    timeout 600 "$EVENV/bin/pip" install -q --disable-pip-version-check "${EVENNIA_SPEC:-evennia}" >>"$LOG" 2>&1 ||
        { evennia_fail "pip install ${EVENNIA_SPEC:-evennia} failed (see $LOG)"; return; }
    EN_VERSION=$("$EVENV/bin/python" -c 'import importlib.metadata as m; print(m.version("evennia"))' 2>>"$LOG")
    (cd "$EVW" && exec timeout 120 "$EVENV/bin/evennia" --init game </dev/null) >>"$LOG" 2>&1 ||
        { evennia_fail "evennia --init failed (see $LOG)"; return; }
    # Five free loopback ports: telnet, web (off), web proxy (off), websocket (off), AMP.
    ports=$("$EVENV/bin/python" -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))') || { evennia_fail "cannot pick free ports"; return; }
    read -r EN_TELNET EN_WEB EN_PROXY EN_WS EN_AMP <<<"$ports"
    sed -e "s/@TELNET_PORT@/$EN_TELNET/" -e "s/@WEB_PORT@/$EN_WEB/" -e "s/@WEB_PROXY_PORT@/$EN_PROXY/" \
        -e "s/@WEBSOCKET_PORT@/$EN_WS/" -e "s/@AMP_PORT@/$EN_AMP/" \
        "$ROOT/scripts/evennia/bench_settings.py" >>"$EGAME/server/conf/settings.py"
    echo "127.0.0.1:$EN_TELNET" >"$EVW/telnet.addr"
    say "Evennia $EN_VERSION: game in $EGAME, telnet on 127.0.0.1:$EN_TELNET"
    evn 300 migrate || { evennia_fail "evennia migrate failed (see $LOG)"; return; }
    (cd "$EGAME" && PATH=$EVENV/bin:$PATH EVENNIA_SUPERUSER_USERNAME=admin EVENNIA_SUPERUSER_PASSWORD=$ADMIN_PW \
        exec timeout 120 "$EVENV/bin/evennia" start </dev/null) >>"$LOG" 2>&1 ||
        { evennia_fail "evennia start failed (see $LOG and $EGAME/server/logs)"; return; }
    # Evennia's first start ends its initial setup by restarting its server
    # once ("reset" mode); a command sent meanwhile is lost. Wait for it.
    local i
    for i in $(seq 1 120); do
        grep -q "successfully restarted in 'reset' mode" "$EGAME/server/logs/server.log" 2>/dev/null && break
        sleep 1
    done
    sleep 1
    en_pids >/dev/null
    en_up || { evennia_fail "evennia start returned but its portal and server are not running (see $EGAME/server/logs)"; return; }

    # From here on ev-loadgen drives Evennia.
    local ev_phase=$PHASE_MS
    ADDR_FILE=$EVW/telnet.addr
    PHASE_MS=240000
    GRAMMAR=("${EN_BASE[@]}" "${EN_CREATE[@]}")
    say "Evennia: provisioning 1,000 accounts"
    # (Evennia creates about 20 accounts and logs in a few hundred sessions a
    # second however many are in flight: 16 at once (EN_BASE) keep each
    # one's time meaningful and far from the login timeout.)
    if lg provision --sessions 1000; then
        ENF[create]="p50 $(msf "$(j .creation_us.p50)") ms, p99 $(msf "$(j .creation_us.p99)") ms; $(j '.accounts_per_s | floor') accounts/s"
        ENF[create_p50]=$(msf "$(j .creation_us.p50)")
    else
        ENF[create]="failed: $(err)"
    fi
    GRAMMAR=("${EN_BASE[@]}" "${EN_LOGIN[@]}")

    say "Evennia: restart: evennia stop, then evennia start to the first login"
    t0=$(now_ns)
    evn 60 stop
    local first_stop_ms start_ms login_ms
    first_stop_ms=$(ms_since "$t0")
    t0=$(now_ns)
    if evn 120 start; then
        start_ms=$(ms_since "$t0")
        if lg login --retry-ms 60000; then
            login_ms=$(ms_since "$t0")
            ENF[start]="$login_ms ms (evennia start returns after $start_ms ms)" ENF[start_ms]=$login_ms
        else
            ENF[start]="login failed: $(err)"
        fi
    else
        ENF[start]="evennia start failed"
    fi
    en_pids >/dev/null
    en_ensure_up "the restart" || { evennia_fail "Evennia would not start again (see $EGAME/server/logs)"; PHASE_MS=$ev_phase; return; }

    say "Evennia: memory: portal + server RSS with idle logged-in sessions"
    local rss_cmd p0 s0 p s n per
    rss_cmd='for f in portal server; do awk "/VmRSS/ { printf \"%s \", \$2 }" "/proc/$(cat '"$EGAME"'/server/$f.pid)/status" || printf "? "; done; echo'
    read -r p0 s0 < <(sh -c "$rss_cmd")
    ENF[rss0]="$(( (p0 + s0) / 1024 )) MiB (portal $((p0 / 1024)) + server $((s0 / 1024)))" ENF[rss0_kib]=$((p0 + s0))
    for n in 100 1000; do
        if lg hold --sessions "$n" --then "$rss_cmd"; then
            read -r p s <<<"$(j .then.last_line)"
            per=$(awk -v p="$p" -v s="$s" -v p0="$p0" -v s0="$s0" -v n="$n" 'BEGIN { printf "%.1f", ((p - p0) + (s - s0)) / n }')
            ENF[mem_$n]="$per KiB (portal $(awk -v p="$p" -v p0="$p0" -v n="$n" 'BEGIN { printf "%.1f", (p - p0) / n }') + server $(awk -v s="$s" -v s0="$s0" -v n="$n" 'BEGIN { printf "%.1f", (s - s0) / n }'); logins took $(j '.login_ms | floor') ms)"
            ENF[mem_${n}_kib]=$per
        else
            ENF[mem_$n]="failed: $(err)"
        fi
        en_ensure_up "memory at $n sessions"
        en_settle "memory at $n sessions"
    done

    say "Evennia: round-trip latency, 1 and 100 sessions × 1 probe/s for $LAT_S s"
    en_latency() {
        local n=$1
        lg latency --sessions "$n" --rate 1 --duration "$LAT_S"
        if [ -n "$(j .round_trip_us.p50)" ]; then
            ENF[rt_$n]="p50 $(msf "$(j .round_trip_us.p50)") ms, p99 $(msf "$(j .round_trip_us.p99)") ms, max $(msf "$(j .round_trip_us.max)") ms ($(j .answered)/$(j .sent)$(j 'if .lost > 0 then ", \(.lost) lost" else "" end'))"
            # A ratio only where every probe was answered: percentiles of the
            # few answered before an overloaded game fell behind mean nothing.
            if [ "$(j .lost)" = 0 ]; then
                ENF[rt_${n}_p50]=$(msf "$(j .round_trip_us.p50)") ENF[rt_${n}_p99]=$(msf "$(j .round_trip_us.p99)")
            else
                ENF[rt_$n]="overloaded: ${ENF[rt_$n]}; no ratio"
            fi
        else
            ENF[rt_$n]="failed: $(err)"
        fi
        en_ensure_up "latency at $n sessions"
        en_settle "latency at $n sessions"
    }
    en_latency 1
    en_latency 100

    say "Evennia: throughput, 100 sessions closed loop for $THR_S s"
    lg throughput --sessions 100 --duration "$THR_S"
    if [ -n "$(j .commands_per_s)" ]; then
        ENF[thr]="$(j '.commands_per_s | floor') commands/s (p50 $(msf "$(j .round_trip_us.p50)") ms, p99 $(msf "$(j .round_trip_us.p99)") ms)"
        ENF[thr_cps]=$(j '.commands_per_s | floor')
    else
        ENF[thr]="failed: $(err)"
    fi
    en_ensure_up "throughput"
    en_settle "throughput"

    say "Evennia: reload: $EN_RELOADS × evennia reload, 100 sessions probing every $EN_PROBE_MS ms"
    lg reload --sessions 100 --probers 100 --interval-ms "$EN_PROBE_MS" --reloads "$EN_RELOADS" \
        --reload-cmd "cd $EGAME && PATH=$EVENV/bin:\$PATH exec timeout 60 $EVENV/bin/evennia reload </dev/null" \
        --spacing-ms 1000 --cmd-timeout-ms 70000 --check-cmd look --check-expect Limbo --drain-ms 10000
    if [ -s "$OUT" ] && [ -z "$(j .error)" ]; then
        local smax broken
        smax=$(msf "$(j .silence.max_us)")
        broken=$(( $(j .sessions_closed) + $(j .sessions_not_logged_in) ))
        ENF[reload]="$EN_RELOADS × \`evennia reload\`, probes every $EN_PROBE_MS ms: reply wait median $(msf "$(j .round_trip.median_us)") ms, max $(msf "$(j .round_trip.max_us)") ms; silence median $(msf "$(j .silence.median_us)"), max $smax ms; lost $(j .probes_lost), doubled $(j .probes_doubled), sessions broken $broken$([ "$(j .commands_failed)" != 0 ] && echo "; $(j .commands_failed) reload commands failed")"
        ENF[reload_dark]=$(awk -v s="$smax" -v i="$EN_PROBE_MS" 'BEGIN { printf "%.2f", s - i }')
        ENF[reload_cmd]="$(j '[.commands[] | .elapsed_ms] | max | floor') ms"
        ENF[reload_cmd_ms]=$(j '[.commands[] | .elapsed_ms] | max | floor')
        ENF[reload_lost]="lost $(j .probes_lost), doubled $(j .probes_doubled) of $(j .probes_sent)"
    else
        ENF[reload]="failed: $(err)"
    fi
    en_pids >/dev/null
    en_ensure_up "the reloads"
    en_settle "the reloads"

    # Last, as it may overload Evennia (1,000 commands a second).
    say "Evennia: round-trip latency, 1,000 sessions × 1 probe/s for $LAT_S s"
    en_latency 1000

    say "Evennia: evennia stop"
    en_pids >/dev/null
    t0=$(now_ns)
    evn 60 stop
    local stop_rc=$? stop_ms left gone_ms
    stop_ms=$(ms_since "$t0")
    left=$(en_alive)
    for _ in $(seq 1 250); do [ "$left" = 0 ] && break; sleep 0.02; left=$(en_alive); done
    gone_ms=$(ms_since "$t0")
    if [ "$stop_rc" = 0 ] && [ "$left" = 0 ]; then
        ENF[stop]="$gone_ms ms (after provisioning: $first_stop_ms ms)" ENF[stop_ms]=$gone_ms
    else
        ENF[stop]="exit $stop_rc after $stop_ms ms, $left processes still there 5 s later"
    fi
    PHASE_MS=$ev_phase
}

# The side-by-side rows, from EVF and ENF (also for a partial Evennia run).
evennia_rows() {
    CMP=()
    cmp_row "account creation (bench hashes: ev argon2id 8 KiB × 1; Evennia MD5)" "${EVF[create]:-}" "${ENF[create]:-}" \
        "$(ratio_lower "${EVF[create_p50]:-}" "${ENF[create_p50]:-}") (p50)"
    cmp_row "start → first login" "${EVF[start]:-}" "${ENF[start]:-}" "$(ratio_lower "${EVF[start_ms]:-}" "${ENF[start_ms]:-}")"
    cmp_row "stop → every process gone" "${EVF[stop]:-}" "${ENF[stop]:-}" "$(ratio_lower "${EVF[stop_ms]:-}" "${ENF[stop_ms]:-}")"
    cmp_row "RSS with 0 sessions (portal + server)" "${EVF[rss0]:-}" "${ENF[rss0]:-}" "$(ratio_lower "${EVF[rss0_kib]:-}" "${ENF[rss0_kib]:-}")"
    local n
    for n in 100 1000; do
        cmp_row "memory per idle logged-in session at $(thousands "$n")" "${EVF[mem_$n]:-}" "${ENF[mem_$n]:-}" \
            "$(ratio_lower "${EVF[mem_${n}_kib]:-}" "${ENF[mem_${n}_kib]:-}")"
    done
    for n in 1 100 1000; do
        cmp_row "round trip, $(thousands "$n") session(s) × 1 command/s" "${EVF[rt_$n]:-}" "${ENF[rt_$n]:-}" \
            "$(ratio_lower "${EVF[rt_${n}_p50]:-}" "${ENF[rt_${n}_p50]:-}") (p50), $(ratio_lower "${EVF[rt_${n}_p99]:-}" "${ENF[rt_${n}_p99]:-}") (p99)"
    done
    cmp_row "throughput, 100 sessions closed loop" "${EVF[thr]:-}" "${ENF[thr]:-}" "$(ratio_higher "${EVF[thr_cps]:-}" "${ENF[thr_cps]:-}")"
    cmp_row "reload with 100 sessions probing" "${EVF[reload]:-}" "${ENF[reload]:-}" "—"
    cmp_row "reload dark time: longest silence − probe interval (max over clients)" \
        "${EVF[reload_dark]:+${EVF[reload_dark]} ms}" "${ENF[reload_dark]:+${ENF[reload_dark]} ms}" \
        "$(ratio_lower "${EVF[reload_dark]:-}" "${ENF[reload_dark]:-}")"
    cmp_row "reload command's own run time (longest)" "${EVF[reload_cmd]:-}" "${ENF[reload_cmd]:-}" \
        "$(ratio_lower "${EVF[reload_cmd_ms]:-}" "${ENF[reload_cmd_ms]:-}")"
    cmp_row "probes lost or doubled across those reloads" "${EVF[reload_lost]:-}" "${ENF[reload_lost]:-}" "—"
}

evennia_table() {
    echo
    echo "Side by side with Evennia $EN_VERSION (ratio: how many times better ev is):"
    evennia_rows >/dev/null
    printf '%s\n' "| figure | ev | Evennia | ratio |" "|---|---|---|---|" "${CMP[@]}"
}

evennia_markdown() {
    evennia_rows >/dev/null
    cat <<EOF

## Side by side with Evennia

The same workloads, the same ev-loadgen, the same machine, in the same run,
one system at a time (ev first, then Evennia):
\`scripts/bench$([ "$QUICK" = 1 ] && echo " --quick") --vs-evennia\`.
EOF
    if [ -n "$EVENNIA_FAILED" ]; then
        cat <<EOF

**The Evennia part did not complete: $EVENNIA_FAILED.** The figures it did
get are below; the others say "not measured".
EOF
    fi
    cat <<EOF

- Evennia $EN_VERSION from PyPI (\`pip install ${EVENNIA_SPEC:-evennia}\`, the
  current release), in a venv under the bench's temporary directory, a game
  made with \`evennia --init\` and migrated, started with \`evennia start\`.
  Settings appended to its \`server/conf/settings.py\`:
  [scripts/evennia/bench_settings.py](scripts/evennia/bench_settings.py).
- Loopback only: telnet and AMP bind 127.0.0.1 on ports picked free; **the web
  server, web client and websocket are off** (the bench speaks telnet only),
  as are SSL, SSH, IRC, Grapevine, Discord and the game index.
- **Throttles lifted for the run** (the values of Evennia's own
  \`server/profiling/settings_mixin.py\`): \`CREATION_THROTTLE_LIMIT\`,
  \`CREATION_THROTTLE_TIMEOUT\`, \`LOGIN_THROTTLE_LIMIT\`,
  \`LOGIN_THROTTLE_TIMEOUT\` = None; \`MAX_CONNECTION_RATE\` and
  \`MAX_COMMAND_RATE\` = 100,000 (default 2 connections/s and 80 commands/s);
  \`MAX_CHAR_LIMIT\` = 100,000; \`IDLE_TIMEOUT\` = -1.
- **Bench-only password hash on Evennia**: \`PASSWORD_HASHERS\` = Django's
  MD5 hasher alone (the default is PBKDF2-SHA256 with 1,000,000+ iterations);
  ev uses argon2id with 8 KiB and 1 iteration. Django's password validators
  stay on. Accounts (1,000) are provisioned before the runs through the login
  screen: \`create NAME PASSWORD\`, then \`Y\` to its "Is this what you
  intended?" question (Evennia's \`create\` does not log in); the sessions log
  in with \`connect NAME PASSWORD\` (success: "You become").
- **Probe on Evennia: an unknown command**, \`xyzzy TOKEN\` →
  \`Command 'xyzzy TOKEN' is not available.\` (Evennia has no \`ping\`; its
  full command lookup runs, including its "did you mean" search). \`say TOKEN\`
  was not used: every bench character stands in Limbo, so each \`say\` would
  be a broadcast to all of them. On ev the probe is \`ping TOKEN\` →
  \`pong TOKEN\`.
- **Reload probes on Evennia every $EN_PROBE_MS ms, not 20 ms**: 100 clients
  probing every 20 ms are 5,000 commands a second, over ten times what Evennia
  serves (see its throughput row); its queue grows without bound and
  \`evennia reload\` then waits behind it for minutes. At one probe a second
  per client (100/s in all, spread out) the load is within its capacity.
  Evennia drops the inputs that arrive while its server is down, so its
  "reply wait" (answered probes only) misses the dark time; the row "longest
  silence − probe interval" is the comparable figure for both, and the lost
  count is reported, not failed on.
- Memory: RSS of Evennia's portal and server processes (their pids from the
  game's \`server/*.pid\`), above the RSS after a restart and one login,
  divided by the sessions held; for ev the same with its portal and server.
- Round trips are measured from the moment the last session is logged in;
  on Evennia its login work for 100 sessions (about 4 s) may still be
  running then, which weighs on its 100-session figure. At 1,000 sessions
  × 1 command/s Evennia falls behind (over four times its throughput) and
  answers few probes within the 3 s drain: no ratio is given.
- Not compared: the broadcast (\`say\` to 100 listeners) and crash recovery
  (Evennia's portal does not restart a killed server); the 10,000-session
  figures (only ev's table has them).

| figure | ev | Evennia | ratio (how many times better ev is) |
|---|---|---|---|
EOF
    printf '%s\n' "${CMP[@]}"
}
