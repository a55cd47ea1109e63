#!/usr/bin/env bash
# Offline demo: the whole runner lifecycle against the GitHub simulator, on this machine.
#   register -> ready -> a queued job runs -> idle timeout -> deregistered
# Needs only the Rust toolchain. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p cml -p cml-sim --quiet
target_dir=${CARGO_TARGET_DIR:-target}
cml="$target_dir/release/cml"
sim="$target_dir/release/cml-sim"

work=$(mktemp -d)
cleanup() {
  [ -n "${sim_pid:-}" ] && kill "$sim_pid" 2>/dev/null || true
  [ -n "${runner_pid:-}" ] && kill "$runner_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. A simulated GitHub on 127.0.0.1 (it accepts the token ghp_simulatoradmintoken).
"$sim" serve --port 0 > "$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do
  url=$(sed -n 's/^listening on //p' "$work/sim.log" | head -n1)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "the simulator did not start"; cat "$work/sim.log"; exit 1; }
echo "== simulated GitHub at $url"

# 2. The simulated actions/runner agent, pre-installed in the runner's workdir.
"$sim" install-agent "$work/runner"

# 3. The runner, exactly as the on-premise example of the CML docs, with a short idle timeout.
echo "== cml runner --repo=$url/octo/demo --labels=local,runner --idle-timeout=5"
"$cml" runner --driver=github --repo="$url/octo/demo" --token=ghp_simulatoradmintoken \
  --labels="local,runner" --idle-timeout=5 --workdir="$work/runner" --name=demo-runner \
  > >(tee "$work/runner.log") 2>&1 &
runner_pid=$!

for _ in $(seq 1 200); do
  grep -q '"status":"ready"' "$work/runner.log" 2>/dev/null && break
  sleep 0.05
done

# 4. A job for the runner's labels.
echo "== queueing job 'train' (labels: self-hosted, local)"
"$sim" queue-job --server "$url" --repo octo/demo --name train --labels self-hosted,local \
  --command 'echo training...; sleep 1; echo done' > /dev/null

# 5. The runner runs it, idles for 5 s, deregisters and exits.
set +e
wait "$runner_pid"
code=$?
set -e
runner_pid=
echo "== cml exited with code $code"
echo "== runners left in the simulated GitHub:"
"$sim" state --server "$url"
