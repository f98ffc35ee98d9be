#!/usr/bin/env bash
# bench-store.sh measures the data-plane store on this machine: a scored
# snapshot of 1,000,000 customers (made in memory) written and streamed back
# on SQLite (modernc.org/sqlite, file on disk) and on PostgreSQL (a server
# started by internal/pgtest with PostgreSQL's stock durability settings),
# and psql's own COPY of the same rows from a CSV file as the floor; plus
# the delivery bookkeeping of one runner (claim 100 targets, record them
# sent, until 100,000 are done). It
# prints one table: operation, store, seconds, rows/s, peak RSS of the
# benchmark process during that operation (VmHWM, reset before each one).
#
# Usage: hack/bench-store.sh [count]    (count: runs of each benchmark, default 1)
#
# Run it on an otherwise idle machine; the load average before and after is
# printed with the table, since a busy machine skews every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

count="${1:-1}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for drv in sqlite postgres; do
  go test -c -o "$tmp/$drv.test" "./internal/store/$drv/"
done

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for drv in sqlite postgres; do
  # The SQLite database goes to $TMPDIR (b.TempDir): keep it on a real disk.
  (cd "$tmp" && "./$drv.test" -test.run '^$' -test.bench 'Snapshot1M|Targets100k' -test.benchtime 1x -test.count "$count") \
    >"$tmp/$drv.out" 2>&1 || { cat "$tmp/$drv.out"; exit 1; }
  if grep -q -- '--- FAIL' "$tmp/$drv.out"; then cat "$tmp/$drv.out"; exit 1; fi
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

printf '\n%-34s %-10s %9s %12s %15s\n' operation store seconds rows/s "peak RSS MiB"
printf '%-34s %-10s %9s %12s %15s\n' "----------------------------------" ---------- --------- ------------ ---------------
for drv in sqlite postgres; do
  awk -v store="$drv" '
    /^Benchmark(Snapshot1M\/|Targets100k)/ {
      name = $1; sub(/^Benchmark(Snapshot1M\/)?/, "", name); sub(/-[0-9]+$/, "", name)
      op = name
      if (name == "Generate")    op = "generate rows (in memory, alone)"
      if (name == "Write")       op = "write snapshot (incl. generate)"
      if (name == "Scan")        op = "streamed read"
      if (name == "PsqlCopyCSV") op = "psql COPY FROM CSV + key (floor)"
      if (name == "Targets100k") op = "claim+record 100k targets (b=100)"
      secs = ""; rows = ""; rss = "-"
      for (i = 3; i < NF; i++) {
        if ($(i+1) == "s/op-wall")    secs = $i
        if ($(i+1) == "rows/s")       rows = $i
        if ($(i+1) == "peak-RSS-MiB") rss = $i
      }
      printf "%-34s %-10s %9.2f %12.0f %15s\n", op, store, secs, rows, rss
    }' "$tmp/$drv.out"
done
echo
echo "load average (1/5/15 min) before: $load_before, after: $load_after; $(nproc) CPUs"
echo "same as: go test -run '^\$' -bench 'Snapshot1M|Targets100k' -benchtime 1x ./internal/store/{sqlite,postgres}/"
echo "peak RSS is the Go benchmark process's; the PostgreSQL server's own memory is not included"
