#!/usr/bin/env bash
# Find or start a container engine with a Docker API for docker-compose.
#
#   tests/compose/engine.sh start DIR [IMAGE...]
#                                       prints KEY=VALUE lines to use as the environment:
#                                       WSGATE_ENGINE (docker|podman), DOCKER_HOST and,
#                                       for Podman, CONTAINERS_CONF and WSGATE_ENGINE_PID;
#                                       IMAGEs: the registry images the stack needs
#                                       (default: redis:7.0 haproxy:2.6)
#   tests/compose/engine.sh stop DIR    stops the Podman service that start left running
#
# Docker: used as it is when its daemon answers (DOCKER_HOST or /var/run/docker.sock).
# Otherwise Podman, set up as /work/shared/CONTAINERS.md found it works on a machine
# without systemd: runc (crun refuses hybrid cgroups), netavark + aardvark-dns (DNS
# between containers), ulimits the sandbox allows, and `podman system service` on a
# private socket in DIR. Where no registry can be reached, the images compose needs
# are made locally: debian:bookworm-slim by debootstrap from apt's own mirror, and
# stand-ins for the IMAGEs from Debian's packages (standins/NAME for image NAME:TAG:
# redis:7.0, haproxy:2.6, prom/prometheus:v2.45.0).
# Exit 77 with one line on stderr when no engine can run here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then echo "usage: $0 start|stop DIR [IMAGE...]" >&2; exit 2; fi
shift 2
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(redis:7.0 haproxy:2.6)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
log() { echo "engine.sh: $*" >&2; }
skip() { echo "engine.sh: no container engine: $*" >&2; exit 77; }

ping_socket() { # unix socket path -> 0 when a Docker API answers /_ping
    [ -S "$1" ] && curl -sf --max-time 3 --unix-socket "$1" http://d/_ping >/dev/null 2>&1
}

if [ "$cmd" = stop ]; then
    pidfile=$dir/podman-service.pid
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    fi
    rm -f "$pidfile" "$dir/podman.sock"
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR [IMAGE...]" >&2; exit 2; }
command -v curl >/dev/null || skip "curl is missing (Debian package curl)"

# ---- Docker, when there is one ------------------------------------------------
docker_host=${DOCKER_HOST:-unix:///var/run/docker.sock}
case $docker_host in
unix://*)
    if ping_socket "${docker_host#unix://}"; then
        echo "WSGATE_ENGINE=docker"
        echo "DOCKER_HOST=$docker_host"
        exit 0
    fi ;;
*)
    if command -v docker >/dev/null && DOCKER_HOST=$docker_host docker info >/dev/null 2>&1; then
        echo "WSGATE_ENGINE=docker"
        echo "DOCKER_HOST=$docker_host"
        exit 0
    fi ;;
esac

# ---- otherwise Podman's Docker API ----------------------------------------------
for tool in podman runc netavark aardvark-dns; do
    command -v "$tool" >/dev/null || [ -x "/usr/lib/podman/$tool" ] || [ -x "/usr/libexec/podman/$tool" ] \
        || skip "no Docker daemon and no $tool (apt-get install podman runc netavark aardvark-dns iptables debootstrap)"
done
[ "$(id -u)" = 0 ] || skip "no Docker daemon, and Podman here needs root (rootful networking)"

nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=4096
[ "$nproc" -gt 4096 ] && nproc=4096
cat >"$dir/containers.conf" <<EOF
# written by tests/compose/engine.sh
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
EOF
export CONTAINERS_CONF=$dir/containers.conf
if ! out=$(podman info 2>&1 >/dev/null); then
    skip "podman info fails: $(echo "$out" | tail -1)"
fi

sock=$dir/podman.sock
if [ -f "$dir/podman-service.pid" ] && kill -0 "$(cat "$dir/podman-service.pid")" 2>/dev/null \
        && ping_socket "$sock"; then
    pid=$(cat "$dir/podman-service.pid")
else
    rm -f "$sock"
    podman system service --time=0 "unix://$sock" </dev/null >"$dir/podman-service.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/podman-service.pid"
    for _ in $(seq 300); do
        ping_socket "$sock" && break
        kill -0 "$pid" 2>/dev/null || skip "podman system service exited: $(tail -1 "$dir/podman-service.log")"
        sleep 0.1
    done
    ping_socket "$sock" || { kill "$pid"; skip "podman system service did not answer on $sock in 30 s"; }
fi

have() { podman image exists "$1"; }
try_pull() { timeout 30 podman pull -q "$1" >/dev/null 2>&1; }

base=docker.io/library/debian:bookworm-slim
if ! have "$base" && ! try_pull "$base"; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
             | grep -oE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' | awk '{print $2; exit}' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    command -v debootstrap >/dev/null || skip "cannot pull $base and no debootstrap to make it"
    log "no registry: building $base with debootstrap from $mirror"
    root=$(mktemp -d "$dir/rootfs.XXXXXX")
    if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$dir/debootstrap.log" 2>&1; then
        rm -rf "$root"
        skip "debootstrap failed: $(tail -1 "$dir/debootstrap.log")"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import -q - "$base" >/dev/null
    rm -rf "$root"
fi
for image in "${images[@]}"; do
    case $image in */*) ref=docker.io/$image ;; *) ref=docker.io/library/$image ;; esac
    standin=${image%%:*}; standin=$here/standins/${standin##*/}
    if ! have "$ref" && ! try_pull "$ref"; then
        [ -f "$standin/Containerfile" ] || skip "cannot pull $image and no stand-in for it in $standin"
        log "no registry: building a local stand-in for $image"
        podman build -q --format docker -t "$ref" "$standin" >/dev/null
    fi
done

echo "WSGATE_ENGINE=podman"
echo "DOCKER_HOST=unix://$sock"
echo "CONTAINERS_CONF=$CONTAINERS_CONF"
echo "WSGATE_ENGINE_PID=$pid"
