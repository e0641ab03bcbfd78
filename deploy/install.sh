#!/usr/bin/env bash
# Install ptxd on a board or any Debian-like box (run as root, from an unpacked release or a
# checkout with the binary built):
#   deploy/install.sh path/to/ptxd [folder|devices]
# The config written to /etc/ptxd/ptxd.toml (only when there is none yet):
#   folder   a watch folder in, PNG result screens out, no devices (deploy/ptxd.folder.toml);
#            the default on x86
#   devices  every key, capture/screen/alert/serial included (deploy/ptxd.example.toml), to
#            edit for the board; the default on ARM
# DESTDIR=/some/root installs the files there instead and skips users, groups and systemd.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: deploy/install.sh path/to/ptxd-binary [folder|devices]}
root=${DESTDIR:-}
case "$(uname -m)" in
    aarch64 | arm*) kind=${2:-devices} ;;
    *) kind=${2:-folder} ;;
esac
case "$kind" in
    folder) config="$here/deploy/ptxd.folder.toml" ;;
    devices) config="$here/deploy/ptxd.example.toml" ;;
    *)
        echo "deploy/install.sh: unknown config kind '$kind': use folder or devices" >&2
        exit 2
        ;;
esac

install -D -m 0755 "$bin" "$root/usr/bin/ptxd"
install -d -m 0755 "$root/usr/share/ptxd/models"
# the default pipeline and the design's DenseNet121 variant (--manifest .../densenet121.toml)
for manifest in manifest.toml densenet121.toml; do
    install -m 0644 "$here/models/$manifest" "$root/usr/share/ptxd/models/"
    for f in $(sed -n 's/^file *= *"\(.*\)"/\1/p' "$here/models/$manifest"); do
        install -D -m 0644 "$here/models/$f" "$root/usr/share/ptxd/models/$f"
    done
done
# onnxruntime's outputs on the shipped inputs: variant = "auto" and `bench --choose` check a
# variant against them on the board before choosing it
install -d -m 0755 "$root/usr/share/ptxd/models/reference"
install -m 0644 "$here"/models/reference/vectors.json "$here"/models/reference/phantom-*.png \
    "$root/usr/share/ptxd/models/reference/"
install -d -m 0755 "$root/usr/share/ptxd/board"
install -m 0644 "$here"/board/*.toml "$root/usr/share/ptxd/board/"
install -D -m 0644 "$here/deploy/ptxd.service" "$root/lib/systemd/system/ptxd.service"
# the drop-in that gives the unit the network ([dicom], [pacs], [mqtt]): installed by hand
install -D -m 0644 "$here/deploy/network.conf" "$root/usr/share/ptxd/systemd/network.conf"
install -D -m 0644 "$here/deploy/99-ptxd.rules" "$root/etc/udev/rules.d/99-ptxd.rules"
install -D -m 0644 "$here/README.md" "$root/usr/share/doc/ptxd/README.md"
install -D -m 0644 "$here/deploy/ptxd.example.toml" "$root/usr/share/doc/ptxd/ptxd.example.toml"
if [[ ! -e "$root/etc/ptxd/ptxd.toml" ]]; then
    install -D -m 0640 "$config" "$root/etc/ptxd/ptxd.toml"
    echo "wrote /etc/ptxd/ptxd.toml from $(basename "$config") ($kind): edit it for this machine"
fi

if [[ -n "$root" ]]; then
    exit 0
fi
for g in gpio spi; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
getent passwd ptxd >/dev/null ||
    useradd --system --user-group --no-create-home --home-dir /var/lib/ptxd --shell /usr/sbin/nologin ptxd
chgrp ptxd /etc/ptxd/ptxd.toml
udevadm control --reload && udevadm trigger --subsystem-match=gpio --subsystem-match=spidev \
    --subsystem-match=video4linux --subsystem-match=graphics --subsystem-match=tty
systemctl daemon-reload
echo "check the models and devices, then start it:"
echo "  sudo -u ptxd ptxd doctor --config /etc/ptxd/ptxd.toml"
echo "  systemctl enable --now ptxd"
echo "then drop radiographs into the config's watch folder; 'ptxd analyze FILE' works from any folder"
