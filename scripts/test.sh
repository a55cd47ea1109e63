#!/usr/bin/env bash
# The tests, from a fresh machine: installs what they need (pinned versions, idempotently),
# then runs `cargo test --workspace` (or `cargo test ARGS` when arguments are given, e.g.
# `scripts/test.sh -p cml --test cloud_aws`).
#
# Guarantees: every tool a test needs is installed or this script fails, naming what it could
# not install and how to fix it; the tests run with CML_REQUIRE_ALL_TOOLS=1, so a test whose
# tool is still missing fails instead of skipping. Assumed: the Rust toolchain (rustup), and
# root or sudo for the Debian packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need, one line each: KIND PACKAGE VERSION CHECK.
#   pip  a PyPI package, installed into the virtual environment $CML_TEST_VENV, whose bin/ is
#        put first on PATH; CHECK is a command it must provide (or `-`).
#   npm  an npm package, installed under $CML_TEST_NPM; CHECK is `-`.
#   apt  a Debian package, installed only when one of the CHECK commands (comma-separated;
#        also looked up in git's exec path) is missing; VERSION is `-` (Debian's).
# google-api-python-client: Google's discovery document for Compute Engine v1
# (compute.v1.json), the contract crates/cml-sim/gcp/compute-subset.json is extracted from and
# the simulated Compute Engine is checked against.
# azure-mgmt-compute, -network, -resource, -authorization: Microsoft's generated models of the
# Azure Resource Manager APIs, which crates/cml-sim/azure/azure-subset.json is extracted from and
# the simulated Resource Manager is checked against.
# kubernetes-validate: Kubernetes' strict JSON schemas (1.25-1.37), which
# crates/cml-sim/k8s/k8s-1.NN-subset.json are extracted from and the simulated Kubernetes API
# server is checked against.
# moto: the EC2 emulator the AWS tests start on 127.0.0.1. @octokit/openapi: GitHub's official
# OpenAPI description, for the test that re-extracts crates/cml-sim/openapi/github-subset.json
# (pinned to the version the subset was extracted from). openssl: the App tests' RSA keys. git:
# the report tests drive it and serve bare repositories with `git http-backend`. nftables and
# iproute2: the sandboxed machine with a job user runs in its own network namespace (`ip netns`)
# and applies its metadata-service firewall rule with `nft`.
NEEDS='
pip  moto[server]       5.2.1   moto_server
pip  google-api-python-client 2.202.0 -
pip  azure-mgmt-compute 39.0.0  -
pip  azure-mgmt-network 33.1.0  -
pip  azure-mgmt-resource 26.0.0 -
pip  azure-mgmt-authorization 4.0.0 -
pip  kubernetes-validate 1.37.0 -
npm  @octokit/openapi   23.0.2  -
apt  openssl            -       openssl
apt  git                -       git,git-http-backend
apt  nftables           -       nft
apt  iproute2           -       ip
'

CML_TEST_VENV="${CML_TEST_VENV:-$HOME/.cache/cml-venv}"
CML_TEST_NPM="${CML_TEST_NPM:-$HOME/.cache/cml-npm}"
export DEBIAN_FRONTEND=noninteractive

die() {
  printf 'scripts/test.sh: %s\n' "$1" >&2
  shift
  for hint in "$@"; do printf 'hint: %s\n' "$hint" >&2; done
  exit 1
}

# A command on PATH, or one of git's own programs (git-http-backend lives in git's exec path).
found() {
  command -v "$1" >/dev/null 2>&1 && return 0
  command -v git >/dev/null 2>&1 && [ -x "$(git --exec-path)/$1" ]
}

apt_updated=""
apt_install() {
  local as_root=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "the Debian packages $* are missing and this is not root" \
      "install them: apt-get install $*"
    as_root=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || die "the Debian packages $* are missing and apt-get is not here" \
    "install $* with this system's package manager"
  if [ -z "$apt_updated" ]; then
    "${as_root[@]}" apt-get update -qq || die "apt-get update failed" "check the network and the apt sources"
    apt_updated=1
  fi
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    die "apt-get install $* failed" "install them by hand: apt-get install $*"
}

command -v cargo >/dev/null 2>&1 || die "cargo is not installed" \
  "install the Rust toolchain (1.89 or newer): https://rustup.rs"

# Debian packages first (the pip and npm installs below need python3 and npm).
missing=()
while read -r kind package version check; do
  [ "$kind" = apt ] || continue
  for cmd in ${check//,/ }; do
    if ! found "$cmd"; then missing+=("$package"); break; fi
  done
done <<<"$NEEDS"
if grep -q '^pip ' <<<"$NEEDS"; then
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
fi
if grep -q '^npm ' <<<"$NEEDS"; then
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi
while read -r kind package version check; do
  [ "$kind" = apt ] || continue
  for cmd in ${check//,/ }; do
    found "$cmd" || die "$cmd is still missing after installing the Debian package $package" \
      "install $package by hand, then run this again"
  done
done <<<"$NEEDS"

# PyPI packages, in one virtual environment of their own (no system Python is changed).
if grep -q '^pip ' <<<"$NEEDS"; then
  if [ ! -x "$CML_TEST_VENV/bin/python" ]; then
    # Debian's python3 makes virtual environments only with its package python3-venv.
    if ! python3 -m venv "$CML_TEST_VENV" >/dev/null 2>&1; then
      rm -rf "$CML_TEST_VENV"
      apt_install python3-venv
      python3 -m venv "$CML_TEST_VENV" || die "cannot create the virtual environment $CML_TEST_VENV" \
        "set CML_TEST_VENV to a writable place"
    fi
  fi
  export PATH="$CML_TEST_VENV/bin:$PATH"
  while read -r kind package version check; do
    [ "$kind" = pip ] || continue
    name="${package%%[*}"
    # (Read whole first: `grep -q` in a pipe would end pip early, which pipefail counts as failure.)
    shown=$("$CML_TEST_VENV/bin/python" -m pip show "$name" 2>/dev/null || true)
    if ! grep -qx "Version: $version" <<<"$shown"; then
      echo "installing $package==$version from PyPI"
      "$CML_TEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$package==$version" ||
        die "pip could not install $package==$version" "check the network and PyPI, then run this again"
    fi
    if [ "$check" != - ] && [ ! -x "$CML_TEST_VENV/bin/$check" ]; then
      die "$package==$version is installed but provides no $check" "remove $CML_TEST_VENV and run this again"
    fi
  done <<<"$NEEDS"
fi

# npm packages, under one prefix.
while read -r kind package version check; do
  [ "$kind" = npm ] || continue
  manifest="$CML_TEST_NPM/node_modules/$package/package.json"
  if ! grep -q "\"version\": \"$version\"" "$manifest" 2>/dev/null; then
    echo "installing $package@$version from npm"
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$CML_TEST_NPM" "$package@$version" ||
      die "npm could not install $package@$version" "check the network and the npm registry, then run this again"
  fi
  grep -q "\"version\": \"$version\"" "$manifest" 2>/dev/null ||
    die "$package@$version is not in $CML_TEST_NPM after npm install" "remove $CML_TEST_NPM and run this again"
done <<<"$NEEDS"

export CML_OCTOKIT_OPENAPI="$CML_TEST_NPM/node_modules/@octokit/openapi/generated/api.github.com.json"
[ -f "$CML_OCTOKIT_OPENAPI" ] || die "$CML_OCTOKIT_OPENAPI is missing" "remove $CML_TEST_NPM and run this again"
if grep -q '^pip ' <<<"$NEEDS"; then
  CML_GCP_DISCOVERY=$("$CML_TEST_VENV/bin/python" -c 'import googleapiclient, os; print(os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "compute.v1.json"))') ||
    die "google-api-python-client is not importable from $CML_TEST_VENV" "remove $CML_TEST_VENV and run this again"
  export CML_GCP_DISCOVERY
  [ -f "$CML_GCP_DISCOVERY" ] || die "$CML_GCP_DISCOVERY is missing" "remove $CML_TEST_VENV and run this again"
  # The Python whose site-packages hold the azure-mgmt models (crates/cml-sim/azure/extract.py).
  CML_AZURE_PYTHON="$CML_TEST_VENV/bin/python"
  "$CML_AZURE_PYTHON" -c 'import azure.mgmt.compute, azure.mgmt.network, azure.mgmt.resource, azure.mgmt.authorization' ||
    die "the azure-mgmt packages are not importable from $CML_TEST_VENV" "remove $CML_TEST_VENV and run this again"
  export CML_AZURE_PYTHON
  # The Python that imports kubernetes_validate (crates/cml-sim/k8s/extract.py).
  CML_K8S_PYTHON="$CML_TEST_VENV/bin/python"
  "$CML_K8S_PYTHON" -c 'import kubernetes_validate' ||
    die "kubernetes-validate is not importable from $CML_TEST_VENV" "remove $CML_TEST_VENV and run this again"
  export CML_K8S_PYTHON
fi
# A test whose tool is missing fails rather than skips.
export CML_REQUIRE_ALL_TOOLS=1

if [ "$#" -eq 0 ]; then
  set -- --workspace
fi
exec cargo test "$@"
