#!/usr/bin/env bash
# Offline demo: the whole runner lifecycle against a simulated forge, on this machine.
#   register -> ready -> a queued job runs -> idle timeout -> deregistered
# Needs only the Rust toolchain. Usage: scripts/demo.sh [github|gitlab|bitbucket]
set -euo pipefail
cd "$(dirname "$0")/.."
forge=${1:-github}
case "$forge" in github|gitlab|bitbucket) ;; *) echo "usage: $0 [github|gitlab|bitbucket]"; exit 2;; esac

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

# 1. The simulator on 127.0.0.1: it plays GitHub, GitLab and Bitbucket at once.
"$sim" serve --port 0 > "$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do
  url=$(sed -n 's/^listening on //p' "$work/sim.log" | head -n1)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "the simulator did not start"; cat "$work/sim.log"; exit 1; }
echo "== simulated $forge at $url"

# 2. The forge's simulated agent, pre-installed in the runner's workdir.
case "$forge" in
  github)
    "$sim" install-agent "$work/runner"
    repo="$url/octo/demo" token=ghp_simulatoradmintoken ;;
  gitlab)
    "$sim" gitlab install "$work/runner"
    repo="$url/group/demo" token=glpat-simulatoradmintoken
    # gitlab-runner's docker executor is what runs outside containers.
    export CML_GITLAB_EXECUTOR=docker ;;
  bitbucket)
    "$sim" bitbucket install "$work/runner"
    repo="$url/octo/demo" token=$("$sim" bitbucket token)
    export CML_BITBUCKET_API_URL="$url" CML_BITBUCKET_RUNTIME=shell ;;
esac

# 3. The runner, exactly as the on-premise example of the CML docs, with a short idle timeout.
echo "== cml runner --repo=$repo --labels=local,runner --idle-timeout=5"
"$cml" runner --driver="$forge" --repo="$repo" --token="$token" \
  --labels="local,runner" --idle-timeout=5 --workdir="$work/runner" --name=demo-runner \
  > >(tee "$work/runner.log") 2>&1 &
runner_pid=$!

for _ in $(seq 1 200); do
  grep -q '"status":"ready"' "$work/runner.log" 2>/dev/null && break
  sleep 0.05
done

# 4. A job for the runner's labels.
echo "== queueing job 'train' (labels: local)"
case "$forge" in
  github)
    "$sim" queue-job --server "$url" --repo octo/demo --name train --labels self-hosted,local \
      --command 'echo training...; sleep 1; echo done' > /dev/null ;;
  gitlab)
    "$sim" gitlab queue-job --server "$url" --project group/demo --name train --labels local \
      --command 'echo training...; sleep 1; echo done' > /dev/null ;;
  bitbucket)
    "$sim" bitbucket queue-job --server "$url" --repo octo/demo --name train --labels self.hosted,local \
      --command 'echo training...; sleep 1; echo done' > /dev/null ;;
esac

# 5. The runner runs it, idles for 5 s, deregisters and exits.
set +e
wait "$runner_pid"
code=$?
set -e
runner_pid=
echo "== cml exited with code $code"
echo "== the simulator's state afterwards:"
case "$forge" in
  github) "$sim" state --server "$url" ;;
  *) curl -s "$url/_sim/$forge/state"; echo ;;
esac
