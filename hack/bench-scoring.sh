#!/usr/bin/env bash
# bench-scoring.sh measures the whole scoring job on this machine: it
# generates a transaction log with the `generate` command (1,000,000
# customers by default, ~8.3 M rows, ~215 MB: BG/NBD r=0.243, alpha=1.0,
# a=0.793, b=6 per week over 2022-2024, a fifth of the purchase days split
# into two rows) and scores it with the `score` command — once with BG/NBD
# and once with Auto (three models on a calibration period, holdout report,
# refit) — each in a fresh process, as the operator would. Beside them it
# times two floors on the same file: a plain encoding/csv scan and the
# internal/source reader into a sink that only counts.
#
# It prints one table: run, stage, seconds, rows/s, and the peak RSS of
# each process (VmHWM). The commands run from the test binary of
# internal/cli (its TestMain dispatches RETENTION_CLI_RUN=generate|score|
# csvscan|sourcescan to the same functions main.go calls), so no operator
# build is needed.
#
# Usage: hack/bench-scoring.sh [customers]
#   BENCH_DIR  keeps the generated file between runs (default: a temp dir)
#
# Run it on an otherwise idle machine; the load average before and after is
# printed with the table, since a busy machine skews every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

customers="${1:-1000000}"
if [[ -n "${BENCH_DIR:-}" ]]; then
  dir="$BENCH_DIR"
  mkdir -p "$dir"
else
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' EXIT
fi
bin="$dir/cli.test"
go test -c -o "$bin" ./internal/cli
run() { RETENTION_CLI_RUN="$1" "$bin" "${@:2}"; }

tx="$dir/transactions-$customers.csv"
if [[ ! -s "$tx" ]]; then
  run generate --customers "$customers" --seed 1 --start 2022-01-01 --end 2024-12-31 \
    --r 0.243 --alpha 1.0 --a 0.793 --b 6 --split 0.22 --transactions "$tx"
fi
size_mb="$(( $(stat -L -c %s "$tx") / 1000000 ))"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
floor_csv="$(run csvscan "$tx")"
floor_src="$(run sourcescan "$tx")"
for model in bgnbd auto; do
  run score --csv "$tx" --calibration-end 2024-12-31 --model "$model" --stats >"$dir/score-$model.txt"
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

printf '\n%s: %s MB, %s\n\n' "$(basename "$tx")" "$size_mb" "$(grep -m1 '^customers' "$dir/score-bgnbd.txt" | tr -s ' ')"
printf '%-8s %-26s %9s %12s %14s\n' run stage seconds rows/s "peak RSS MiB"
printf '%-8s %-26s %9s %12s %14s\n' -------- -------------------------- --------- ------------ --------------
for line in "$floor_csv" "$floor_src"; do
  awk '{ n = split($0, f, /  +/); sub(/ s$/, "", f[2]); sub(/ rows\/s$/, "", f[3]); sub(/^peak RSS /, "", f[5]); sub(/ MiB$/, "", f[5])
         printf "%-8s %-26s %9s %12s %14s\n", "floor", f[1], f[2], f[3], f[5] }' <<<"$line"
done
for model in bgnbd auto; do
  awk -v run="$model" '
    /^stage timings/ { on = 1; next }
    on && $1 == "stage" { next }
    on && /peak RSS MiB/ { rss = $4; on = 0; next }
    on && NF >= 2 { stage[++n] = $1; secs[n] = $2; rate[n] = (NF >= 3 ? $3 : "") }
    END { for (i = 1; i <= n; i++) printf "%-8s %-26s %9s %12s %14s\n", run, stage[i], secs[i], rate[i], (stage[i] == "total" ? rss : "") }
  ' "$dir/score-$model.txt"
done
printf '\nload average before: %s, after: %s (%s CPUs)\n' "$load_before" "$load_after" "$(nproc)"
grep -E '^model|^fallback' "$dir/score-auto.txt" | sed 's/^/auto: /'
