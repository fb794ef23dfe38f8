#!/usr/bin/env bash
# `make offline-images`: the stand-ins of the official images compose.yaml names, built here
# from Debian packages and Go modules for a machine that reaches no container registry (CI's).
# The tags are images.env's; `make up OFFLINE=1` uses them. Needs root (debootstrap), a Docker
# engine, and Go >= 1.26 for Jaeger. An image already built is kept (FORCE=1 builds again).
#
#   bookshop-offline/debian:bookworm   debootstrap --variant=minbase, the host's Debian mirror,
#                                      the host's CA bundle trusted (SSL_CERT_FILE, PIP_CERT)
#   PYTHON_IMAGE      python3.11 from Debian (deploy/Dockerfile's base)
#   POSTGRES_IMAGE    PostgreSQL 15 from Debian, the official image's variables and init scripts
#   PROMETHEUS_IMAGE  Prometheus 2.42 from Debian
#   JAEGER_IMAGE      Jaeger v2 built from its Go module (no UI assets)
#   LOCUST_IMAGE      locust from PyPI, the version uv.lock holds
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BASE_IMAGE=bookshop-offline/debian:bookworm
JAEGER_MODULE=github.com/jaegertracing/jaeger
# The host's trust store: where TLS is intercepted (a corporate proxy, this project's CI), the
# host trusts the intercepting authority and a fresh image does not.
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
DOCKER=${DOCKER:-docker}
export DOCKER_BUILDKIT=1

say() { printf '==> %s\n' "$*"; }
image_value() { sed -n "s/^$1=//p" "$HERE/images.env"; }
have_image() { [[ -z "${FORCE:-}" ]] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror the host's apt uses (deb822 sources or sources.list), for debootstrap and
# for apt inside the images.
debian_mirror() {
    local found
    found=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources \
        2>/dev/null || true)
    if [[ -z "$found" ]]; then
        found=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list \
            2>/dev/null || true)
    fi
    echo "${found:?no Debian mirror found in /etc/apt/sources.list(.d); set DEBIAN_MIRROR}"
}

build_base() {
    have_image "$BASE_IMAGE" && { say "$BASE_IMAGE: present"; return; }
    local mirror rootfs
    mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
    rootfs=$(mktemp -d)
    say "$BASE_IMAGE: debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    local changes=()
    if [[ -r "$HOST_CA_BUNDLE" ]]; then
        install -D -m 0644 "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/host-ca-bundle.crt"
        for variable in SSL_CERT_FILE PIP_CERT REQUESTS_CA_BUNDLE; do
            changes+=(--change "ENV $variable=/etc/ssl/host-ca-bundle.crt")
        done
    fi
    tar -C "$rootfs" -c . | "$DOCKER" import "${changes[@]}" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

build() {  # build TAG DIRECTORY [docker build options...]
    local tag=$1 directory=$2
    shift 2
    have_image "$tag" && { say "$tag: present"; return; }
    say "$tag: docker build $directory"
    "$DOCKER" build --quiet --tag "$tag" "$@" "$directory" >/dev/null
}

build_jaeger() {
    local tag context version source
    tag=$(image_value JAEGER_IMAGE)
    have_image "$tag" && { say "$tag: present"; return; }
    version="v${tag##*:}"
    command -v go >/dev/null || { echo "Jaeger is built with Go >= 1.26: no go here" >&2; exit 1; }
    context=$(mktemp -d)
    # Its go.mod has replace directives, which `go install module@version` refuses: build it
    # from the downloaded module as the main module.
    say "$tag: go build $JAEGER_MODULE/cmd/jaeger@$version (several minutes on 2 cores)"
    source=$(go mod download -json "$JAEGER_MODULE@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    cp -r "$source" "$context/src"
    chmod -R u+w "$context/src"
    (cd "$context/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" \
        -o "$context/jaeger" ./cmd/jaeger)
    cp "$HERE/jaeger/Dockerfile" "$context/Dockerfile"
    build "$tag" "$context" --build-arg "BASE_IMAGE=$BASE_IMAGE"
    rm -rf "$context"
}

locked_version() {  # the version of a package in uv.lock
    awk -v name="$1" '$0 == "name = \"" name "\"" {getline; gsub(/version = |"/, ""); print; exit}' \
        "$ROOT/uv.lock"
}

main() {
    local python_image locust_image
    python_image=$(image_value PYTHON_IMAGE)
    locust_image=$(image_value LOCUST_IMAGE)
    if [[ "${locust_image##*:}" != "$(locked_version locust)" ]]; then
        echo "images.env's LOCUST_IMAGE is not uv.lock's locust $(locked_version locust)" >&2
        exit 1
    fi
    build_base
    build "$python_image" "$HERE/python" --build-arg "BASE_IMAGE=$BASE_IMAGE"
    build "$(image_value POSTGRES_IMAGE)" "$HERE/postgres" --build-arg "BASE_IMAGE=$BASE_IMAGE"
    build "$(image_value PROMETHEUS_IMAGE)" "$HERE/prometheus" --build-arg "BASE_IMAGE=$BASE_IMAGE"
    build "$locust_image" "$HERE/locust" --build-arg "PYTHON_IMAGE=$python_image" \
        --build-arg "LOCUST_VERSION=${locust_image##*:}"
    build_jaeger
    say "offline images ready: make up OFFLINE=1"
}

main "$@"
