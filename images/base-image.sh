#!/usr/bin/env bash
# Print a base image reference that `docker build --build-arg BASE_IMAGE=...` can use.
#   images/base-image.sh IMAGE
# IMAGE (from matrix/profiles.toml) is used when it is present or can be pulled. Where no registry can be
# reached, an equivalent Debian root filesystem is made with debootstrap and imported as localhost/debian:SUITE
# (the suite is read from IMAGE's tag: bookworm, trixie ...). Everything else goes to stderr.
set -euo pipefail

image=${1:?usage: images/base-image.sh IMAGE}
say() { printf 'base-image: %s\n' "$*" >&2; }

if docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image" >&2 2>/dev/null; then
    echo "$image"
    exit 0
fi

suite=$(grep -oE 'bookworm|trixie|bullseye' <<<"$image" | head -n1 || true)
if [[ -z $suite ]]; then
    say "cannot pull $image and cannot make it locally: only Debian-based images (bookworm, trixie, bullseye) can be debootstrapped"
    exit 1
fi
local_image=localhost/debian:$suite
if docker image inspect "$local_image" >/dev/null 2>&1; then
    say "cannot pull $image; using $local_image made earlier with debootstrap"
    echo "$local_image"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    say "cannot pull $image; making $local_image needs root (debootstrap)"
    exit 1
fi
command -v debootstrap >/dev/null || apt-get install -y --no-install-recommends debootstrap >&2
say "cannot pull $image; making $local_image with debootstrap (~30 s)"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase "$suite" "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
# The image is read through the Docker API afterwards, so import it through the same engine.
tar -C "$rootfs" -c . | docker import - "$local_image" >&2
echo "$local_image"
