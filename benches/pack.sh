#!/bin/sh
# Pack benchmark of rbuild-layers: a 10,000-file / 100 MB tree and a 500 MB file, packed into the
# blob store with none / gzip (1 thread) / gzip (all cores) / zstd, plus compression-only numbers
# (block-parallel gzip vs single-stream zlib-rs). Data is generated once under /tmp/rbuild-bench
# (or the directory given as $1); nothing is written into the repository.
#
#   benches/pack.sh [DATA_DIR] [--quick]
#
# On a shared machine, BOOST=1 runs the benchmark in its own session with its scheduler autogroup
# at nice -10 (root only), so other sessions' compiles do not distort the wall-clock numbers.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-/tmp/rbuild-bench}
[ $# -gt 0 ] && shift
cargo bench -p rbuild-layers --bench pack --no-run
bin=$(cargo bench -p rbuild-layers --bench pack --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
if [ "${BOOST:-0}" = 1 ]; then
    exec setsid sh -c 'echo -10 > /proc/self/autogroup 2>/dev/null || true; exec "$0" "$@"' "$bin" --dir "$dir" "$@"
fi
exec "$bin" --dir "$dir" "$@"
