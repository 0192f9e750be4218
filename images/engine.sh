#!/usr/bin/env bash
# A Docker engine for `docker build` / `docker run`: the real one if it answers, else podman behind the
# Docker API on a unix socket (see images/README.md). Idempotent; prints the environment to use it.
#   images/engine.sh          start (or find) the engine
#   images/engine.sh stop     stop the podman service this script started (by its PID file)
set -euo pipefail

SOCK=${PIPELINE_ENGINE_SOCK:-/run/podman-docker.sock}
PIDFILE=${SOCK%.sock}.pid
HERE=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/engine/containers.conf}

say() { printf 'engine: %s\n' "$*" >&2; }

if [[ ${1:-} == stop ]]; then
    if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        kill "$(cat "$PIDFILE")" && say "stopped podman service $(cat "$PIDFILE")"
    fi
    rm -f "$PIDFILE"
    exit 0
fi

# A daemon that already answers (GitHub's runners, a developer's Docker Desktop) is used as it is.
if [[ -z ${DOCKER_HOST:-} ]] && docker info >/dev/null 2>&1; then
    say "using the running Docker daemon"
    exit 0
fi

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        say "podman and runc are missing: run as root: apt-get install -y podman runc debootstrap"
        exit 1
    fi
    apt-get install -y --no-install-recommends podman runc debootstrap >&2
fi

if ! DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; then
    rm -f "$SOCK"
    # setsid + nohup: the service outlives this script and make; stop it with `images/engine.sh stop`. It runs
    # from /: started inside a checkout that is later deleted, it could start no container (conmon: "Failed to
    # get working directory"; docker: "unable to upgrade to tcp, received 409").
    cd /
    setsid nohup podman system service --time=0 "unix://$SOCK" >"${SOCK%.sock}.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 60); do
        DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1 || { say "podman service did not answer on $SOCK"; exit 1; }
    say "podman service $(cat "$PIDFILE") answers on $SOCK"
fi
# The compat API serves the classic builder only, hence DOCKER_BUILDKIT=0. PIPELINE_ENGINE tells images/build.sh
# that `podman build` can read the build context in place (same storage as the service).
echo "export DOCKER_HOST=unix://$SOCK DOCKER_BUILDKIT=0 CONTAINERS_CONF=$CONTAINERS_CONF PIPELINE_ENGINE=podman"
