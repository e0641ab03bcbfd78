#!/usr/bin/env bash
# Build the arm64 guest for the QEMU device test (tests/qemu/test_device.py):
#   tests/qemu/guest.sh PTXD_AARCH64_BINARY OUT_DIR INPUT_FILE...
# Debian's arm64 kernel and busybox-static are fetched with apt (needs `dpkg
# --add-architecture arm64`; test.sh does it) and cached in $PTXD_QEMU_CACHE (default
# ~/.cache/ptxd-qemu). OUT_DIR gets `vmlinuz` and `initrd.gz`: busybox, the kernel modules
# the test needs (vivid, virtio-gpu), ptxd, the models, the board profiles, the test config,
# and the input files (real radiographs from ../shared/data, copied at test time) in the
# watch folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:?usage: guest.sh PTXD_BINARY OUT_DIR INPUT...}
out=${2:?usage: guest.sh PTXD_BINARY OUT_DIR INPUT...}
shift 2
cache=${PTXD_QEMU_CACHE:-${HOME:-/tmp}/.cache/ptxd-qemu}
mkdir -p "$cache" "$out"

# the current bookworm arm64 kernel (the metapackage names it), fetched once
kernel_pkg=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/ *Depends: \(linux-image-[0-9].*\):arm64/\1/p' | head -1)
[[ -n "$kernel_pkg" ]] || { echo "guest.sh: no linux-image-arm64 in apt (dpkg --add-architecture arm64; apt-get update)" >&2; exit 1; }
kver=${kernel_pkg#linux-image-}
if [[ ! -d "$cache/$kver" ]]; then
    (cd "$cache" && apt-get download -qq "$kernel_pkg:arm64" busybox-static:arm64 2>/dev/null)
    rm -rf "$cache/$kver.tmp" && mkdir -p "$cache/$kver.tmp"
    dpkg-deb -x "$cache"/"$kernel_pkg"_*_arm64.deb "$cache/$kver.tmp/kernel"
    dpkg-deb -x "$cache"/busybox-static_*_arm64.deb "$cache/$kver.tmp/busybox"
    rm -f "$cache"/*.deb
    mv "$cache/$kver.tmp" "$cache/$kver"
fi
k=$cache/$kver/kernel
mods=lib/modules/$kver

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc/ptxd,usr/bin,usr/share/ptxd/models,usr/share/ptxd/board,var/lib/ptxd/incoming,$mods/kernel/drivers}
cp "$cache/$kver/busybox/bin/busybox" "$root/bin/"
# V4L2 (vivid, videobuf2, v4l2-tpg, mc, cec, rc-core), DRM (virtio-gpu and its helpers),
# virtio-pci, and what they lean on; depmod runs in the guest (busybox)
for d in media gpu/drm virtio video i2c; do
    mkdir -p "$root/$mods/kernel/drivers/$(dirname "$d")"
    cp -r "$k/$mods/kernel/drivers/$d" "$root/$mods/kernel/drivers/$d"
done
cp "$k/$mods/modules.builtin" "$k/$mods/modules.order" "$root/$mods/"
cp "$k/boot/vmlinuz-$kver" "$out/vmlinuz"

install -m 0755 "$bin" "$root/usr/bin/ptxd"
# the default variants' files, as the manifest names them (the classifier and the segmenter
# share one file): a clean install carries the same
cp "$repo/models/manifest.toml" "$root/usr/share/ptxd/models/"
for f in $(sed -n 's/^file = "\(.*\.int8\.onnx\)"$/\1/p' "$repo/models/manifest.toml" | sort -u); do
    cp "$repo/models/$f" "$root/usr/share/ptxd/models/"
done
cp "$repo"/board/*.toml "$root/usr/share/ptxd/board/"
cp "$here/ptxd.toml" "$root/etc/ptxd/ptxd.toml"
install -m 0755 "$here/init" "$root/init"
for f in "$@"; do
    cp "$f" "$root/var/lib/ptxd/incoming/"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 > "$out/initrd.gz")
echo "guest: kernel $kver, initrd $(du -h "$out/initrd.gz" | cut -f1)"
