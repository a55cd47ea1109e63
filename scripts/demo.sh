#!/usr/bin/env bash
# Offline demo: the whole runner lifecycle against a simulated forge, on this machine.
#   register -> ready -> a queued job runs -> idle timeout -> deregistered
#
# scripts/demo.sh reports: the report commands of a CML workflow (publish, send-comment,
# comment update, pr) against a simulated GitHub serving a bare repository over HTTP.
# Needs only the Rust toolchain and git. Usage: scripts/demo.sh [github|gitlab|bitbucket|reports]
set -euo pipefail
cd "$(dirname "$0")/.."
forge=${1:-github}
case "$forge" in github|gitlab|bitbucket|reports) ;; *) echo "usage: $0 [github|gitlab|bitbucket|reports]"; exit 2;; esac

cargo build --release -p cml -p cml-sim --quiet
target_dir=${CARGO_TARGET_DIR:-target}
cml="$target_dir/release/cml"
sim="$target_dir/release/cml-sim"
cml=$(realpath "$cml") sim=$(realpath "$sim")

work=$(mktemp -d)
cleanup() {
  [ -n "${sim_pid:-}" ] && kill "$sim_pid" 2>/dev/null || true
  [ -n "${runner_pid:-}" ] && kill "$runner_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The simulator on 127.0.0.1: it plays GitHub, GitLab and Bitbucket at once.
mkdir -p "$work/git"
"$sim" serve --port 0 --git-root "$work/git" > "$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do
  url=$(sed -n 's/^listening on //p' "$work/sim.log" | head -n1)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "the simulator did not start"; cat "$work/sim.log"; exit 1; }
echo "== simulated $forge at $url"

if [ "$forge" = reports ]; then
  export REPO_TOKEN=ghp_simulatoradmintoken CML_DRIVER=github
  export GIT_AUTHOR_NAME=Dev GIT_AUTHOR_EMAIL=dev@example.com GIT_COMMITTER_NAME=Dev GIT_COMMITTER_EMAIL=dev@example.com
  mkdir -p "$work/git/octo"
  git init -q --bare -b main "$work/git/octo/demo.git"
  git init -q -b main "$work/checkout" && cd "$work/checkout"
  echo "v1" > dvc.lock && git add . && git commit -q -m initial
  git push -q "$work/git/octo/demo.git" main
  git remote add origin "$url/octo/demo.git"
  printf '\x89PNG\r\n\x1a\nnot really a picture' > plot.png
  echo "accuracy: 0.93" > metrics.txt
  echo '== cat metrics.txt >> report.md; cml publish plot.png --md --title="Confusion Matrix" >> report.md; cml send-comment report.md'
  cat metrics.txt >> report.md
  "$cml" publish plot.png --md --title="Confusion Matrix" >> report.md
  "$cml" send-comment report.md
  echo "== report.md:"; cat report.md
  echo "accuracy: 0.95" > report.md
  echo "== cml comment update report.md (edits the same comment)"
  "$cml" comment update report.md
  echo "v2" > dvc.lock
  echo "== cml pr create dvc.lock (branch pushed over HTTP with the token, pull request opened)"
  "$cml" pr create dvc.lock
  echo "== the branches of the remote:"; git --git-dir "$work/git/octo/demo.git" branch
  echo "== the simulator's comments and pull requests:"
  curl -s -H "Authorization: Bearer $REPO_TOKEN" "$url/repos/octo/demo/commits/$(git rev-parse main)/comments" \
    | python3 -c 'import json,sys; [print("comment", c["id"], repr(c["body"][:60])) for c in json.load(sys.stdin)]' 2>/dev/null || true
  curl -s -H "Authorization: Bearer $REPO_TOKEN" "$url/repos/octo/demo/pulls" \
    | python3 -c 'import json,sys; [print("pull request", p["number"], p["head"]["ref"], "->", p["base"]["ref"]) for p in json.load(sys.stdin)]' 2>/dev/null || true
  exit 0
fi

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
