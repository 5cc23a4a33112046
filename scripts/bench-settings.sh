# Sourced by the benchmark scripts (bench, bench-ab, bench-options,
# bench-world, soak): editing a game's ev.toml, and the settings every one
# of them runs with. Not a script of its own.

# set_key SECTION KEY VALUE: KEY in [SECTION] of $GAME/ev.toml set to VALUE.
# Fails, changing nothing, if the file has no such key.
set_key() {
    awk -v s="$1" -v k="$2" -v v="$3" '
        /^\[/ { sec = substr($0, 2, length($0) - 2) }
        sec == s && $1 == k { $0 = k " = " v; done = 1 }
        { print }
        END { if (!done) exit 1 }' "$GAME/ev.toml" >"$GAME/ev.toml.new" &&
        mv "$GAME/ev.toml.new" "$GAME/ev.toml" || { rm -f "$GAME/ev.toml.new"; return 1; }
}

# The bench-only settings of $GAME: a cheap password hash (so thousands of
# logins measure the game, not argon2), and limits above the session counts
# (every bench player connects from 127.0.0.1 and logs in at once). Sets
# every key the file has; fails naming the first it lacks (an older build's
# ev.toml, in bench-ab).
bench_settings() {
    local section key value missing=
    while read -r section key value; do
        set_key "$section" "$key" "$value" || missing=${missing:-$section.$key}
    done <<'SETTINGS'
auth argon2_memory_kib 8
auth argon2_iterations 1
auth password_queue 30000
auth creates_per_address_per_hour 1000000
auth creates_per_minute 1000000
portal max_connections_per_ip 30000
portal max_connections 30000
portal commands_per_second 1000000
portal command_burst 1000000
portal commands_per_second_per_ip 1000000
portal command_burst_per_ip 1000000
SETTINGS
    [ -z "$missing" ] || { echo "ev.toml has no $missing" >&2; return 1; }
}
