# syntax=docker/dockerfile:1
#
# The runner image: `cml` with what CI jobs and the runner agents need, on Ubuntu 24.04 (CPU)
# or NVIDIA's CUDA runtime with cuDNN on Ubuntu 24.04 (GPU). `cml` is the published static
# binary of release CML_VERSION, checked against the release's SHA256SUMS.
#
#   CPU: docker buildx build --build-arg CML_VERSION=X.Y.Z -t cml:X.Y.Z .
#   GPU: docker buildx build --build-arg CML_VERSION=X.Y.Z \
#          --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 -t cml:X.Y.Z-gpu .
#
# Inside: git, git-lfs, curl, ssh, Python 3 with pip in a virtual environment first on PATH
# (so `pip install -r requirements.txt` works as in CML's images), DVC, the prerequisites of
# GitHub's actions/runner (.NET: ICU, Kerberos, LTTng, OpenSSL, zlib) and of Bitbucket's Linux
# Shell runner (Java 17), tini, and a non-root user `runner` (uid 1001, passwordless sudo).
# Commands run as root by default, as in CML's images (GitHub's job containers expect it).

ARG BASE_IMAGE=ubuntu:24.04

# The release binary for the platform being built, verified against the release's checksums.
FROM ubuntu:24.04 AS cml
ARG CML_VERSION
ARG CML_RELEASES=https://github.com/cml-rs/cml/releases/download
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /download
RUN if [ -z "${CML_VERSION}" ]; then echo "set --build-arg CML_VERSION=X.Y.Z (a published release)" >&2; exit 1; fi \
 && case "${TARGETARCH}" in \
      amd64) arch=x86_64 ;; \
      arm64) arch=aarch64 ;; \
      *) echo "no cml release binary for the platform '${TARGETARCH}' (build with BuildKit: docker buildx)" >&2; exit 1 ;; \
    esac \
 && asset="cml-${arch}-linux" \
 && curl -fsSL --retry 5 -o "${asset}" "${CML_RELEASES}/v${CML_VERSION}/${asset}" \
 && curl -fsSL --retry 5 -o SHA256SUMS "${CML_RELEASES}/v${CML_VERSION}/SHA256SUMS" \
 && grep -E "^[0-9a-f]{64}  ${asset}\$" SHA256SUMS | sha256sum --check --strict - \
 && install -m 0755 "${asset}" /cml \
 && /cml --version

FROM ${BASE_IMAGE}
ARG DVC_VERSION=3.67.1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Distribution packages follow Ubuntu's security updates rather than pinned versions.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl git git-lfs gnupg jq openssh-client sudo tini unzip zip \
      python3 python3-pip python3-venv \
      libicu74 libkrb5-3 liblttng-ust1t64 libssl3t64 zlib1g \
      openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "dvc==${DVC_VERSION}" \
 && useradd --create-home --shell /bin/bash --uid 1001 runner \
 && echo 'runner ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/runner \
 && chmod 0440 /etc/sudoers.d/runner \
 && chown -R runner:runner /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY --from=cml /cml /usr/local/bin/cml
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint
RUN cml --version && dvc --version && git --version
# tini is PID 1: it reaps the orphans the runner agents leave and passes signals on, so a
# `docker stop` or a deleted pod reaches `cml`, which stops its runner cleanly.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/docker-entrypoint"]
CMD ["--help"]
