#!/bin/sh
# RUN step overhead benchmark of rbuild (issue 5): FROM busybox:test + 20 x `RUN true N`, built
# with no_cache through rbuild::solve::build, by the built-in sandbox and by runc. Prints one table
# row per runtime: median build times with 0 and with N RUN steps, the per-step overhead
# ((N-RUN build - 0-RUN build) / N), and the median / p90 of the RUN steps' StepStarted ->
# StepDone durations. Needs root, /bin/busybox (busybox-static) and runc. Stores are temp dirs.
#
#   benches/run_steps.sh [--runs N] [--steps N] [--runtime builtin|runc|both] [--runc PATH] [--breakdown]
#
# --breakdown adds a table of the phases of a RUN step (snapshot prepare, executor, diff, layer
# write, unmount) replayed outside the build driver, and the driver's remainder.
#
# BOOST=1 runs the benchmark in its own session with its scheduler autogroup at nice -10 (root
# only), so other sessions' compiles do not distort the wall-clock numbers.
set -eu
cd "$(dirname "$0")/.."
cargo bench -p rbuild --bench run_steps --no-run
bin=$(cargo bench -p rbuild --bench run_steps --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
# The bench never reads the environment; hand it the runc on PATH unless --runc is given.
case " $* " in
*" --runc "*) ;;
*) if runc=$(command -v runc); then set -- --runc "$runc" "$@"; fi ;;
esac
if [ "${BOOST:-0}" = 1 ]; then
    exec setsid sh -c 'echo -10 > /proc/self/autogroup 2>/dev/null || true; exec "$0" "$@"' "$bin" "$@"
fi
exec "$bin" "$@"
