#!/usr/bin/env bash
# Installs what cryo's build, demo and tests need on a fresh Debian machine
# that has the Rust toolchain. Idempotent; needs root for apt-get.
set -euo pipefail
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v zstd >/dev/null || need+=(zstd)
command -v python3 >/dev/null || need+=(python3)
command -v busybox >/dev/null || need+=(busybox-static)
command -v make >/dev/null || need+=(make)
command -v ps >/dev/null || need+=(procps)
# The file-system tests run sqlite3 and git inside the sandbox.
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v git >/dev/null || need+=(git)
# The server tests run redis-server, nginx and curl inside the sandbox.
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
# The OCI runtime tests drive cryo through podman (with conmon) and
# containerd (ctr and the runc v2 shim).
command -v podman >/dev/null || need+=(podman)
command -v conmon >/dev/null || need+=(conmon)
command -v containerd >/dev/null || need+=(containerd)
# podman checkpoints and restores only with a criu that answers its version
# query (it never runs it for a cryo container: the runtime checkpoints).
command -v criu >/dev/null || [ -x /usr/sbin/criu ] || need+=(criu)
# The inet tests run their native halves in a network namespace of their
# own and bring its lo up with ip.
[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || [ -x /bin/ip ] || need+=(iproute2)
# Static glibc guests need libc.a.
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
