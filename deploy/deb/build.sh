#!/usr/bin/env bash
# Build the two Debian packages with dpkg-deb (no debhelper, no source package):
#   deploy/deb/build.sh ARCH BINARY OUTDIR
#     ARCH    amd64 or arm64 (BINARY's)
#     BINARY  the ptxd binary to package (cargo build --release [--target ...])
# It writes OUTDIR/ptxd_<version>_<ARCH>.deb and OUTDIR/ptxd-models_<models version>_all.deb.
#
# - ptxd: the binary, the systemd unit and its network drop-in, the udev rules, the board
#   profiles, /etc/ptxd/ptxd.toml (a conffile: the folder-only config, which runs as it is;
#   the example with every key beside the README), the man page (help2man, from --help),
#   the README; maintainer
#   scripts make the user and folders and restart the service (deploy/deb/ptxd/).
# - ptxd-models: the models, their manifests and the reference vectors, versioned on their
#   own. Its postinst checks every file against the manifest's sha256 and only then makes
#   it the set in use (/var/lib/ptxd-models/current); a set that does not match leaves the
#   one in use as it was (deploy/deb/ptxd-models/).
#
# Settings, from the environment:
#   PTXD_DEB_VERSION     the ptxd package's version (default: Cargo.toml's)
#   PTXD_MODELS_VERSION  the models package's (default: the newest date in the manifest's
#                        model versions, e.g. 20261204)
#   PTXD_MODELS_DIR      the models folder to package (default: the checkout's models/)
#   PTXD_HELP_BINARY     a binary this machine runs, for the man page (default: BINARY;
#                        give the host's build when packaging arm64 on x86)
#   PTXD_DEB_COMPRESSION dpkg-deb's: xz (the default: the models package is 19 MB, not 34,
#                        for 15 s of compression) or gzip (1 s; the tests use it)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
arch=${1:?usage: deploy/deb/build.sh amd64|arm64 BINARY OUTDIR}
bin=${2:?usage: deploy/deb/build.sh amd64|arm64 BINARY OUTDIR}
out=${3:?usage: deploy/deb/build.sh amd64|arm64 BINARY OUTDIR}
case "$arch" in
    amd64 | arm64) ;;
    *)
        echo "deploy/deb/build.sh: unknown architecture '$arch': use amd64 or arm64" >&2
        exit 2
        ;;
esac
version=${PTXD_DEB_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$here/Cargo.toml" | head -1)}
models_dir=${PTXD_MODELS_DIR:-$here/models}
models_version=${PTXD_MODELS_VERSION:-$(grep -o -- '-20[0-9]\{6\}"' "$models_dir/manifest.toml" | tr -dc '0-9\n' | sort | tail -1)}
help_bin=${PTXD_HELP_BINARY:-$bin}
compression=${PTXD_DEB_COMPRESSION:-xz}
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# ptxd: what deploy/install.sh installs, less the models (their own package)
p="$stage/ptxd"
# the folder-only config on every architecture: a fresh install runs as it is, on a board
# too; the sections for its devices are in /usr/share/doc/ptxd/ptxd.example.toml
DESTDIR="$p" "$here/deploy/install.sh" "$bin" folder >/dev/null
mv "$p/usr/share/ptxd/models" "$stage/models"
# the models in use are the ones ptxd-models checked (see its postinst)
sed -i 's|^manifest *=.*|manifest = "/var/lib/ptxd-models/current/manifest.toml"|' "$p/etc/ptxd/ptxd.toml"
install -d "$p/usr/share/man/man1"
help2man --no-info --name "pneumothorax triage beside an X-ray digitizer (not a diagnosis)" \
    --version-string "$version" "$help_bin" | gzip -9n >"$p/usr/share/man/man1/ptxd.1.gz"
install -d "$p/DEBIAN"
install -m 0755 "$here"/deploy/deb/ptxd/{postinst,prerm,postrm} "$p/DEBIAN/"
printf '%s\n' /etc/ptxd/ptxd.toml /etc/udev/rules.d/99-ptxd.rules >"$p/DEBIAN/conffiles"
# a dynamic binary (the amd64 build) needs the C and C++ runtimes (CharLS is C++); the
# aarch64 build links glibc statically and needs nothing
# the models come first: dpkg configures ptxd-models (checked, made the set in use) before
# ptxd's postinst starts the service on them
depends="ptxd-models"
if [[ $(readelf -l "$bin") == *"program interpreter"* ]]; then
    depends+=", libc6 (>= 2.36), libgcc-s1, libstdc++6"
fi
cat >"$p/DEBIAN/control" <<CONTROL
Package: ptxd
Version: $version
Architecture: $arch
Maintainer: ptxd developers <ptxd@localhost>
Section: science
Priority: optional
Depends: $depends
Installed-Size: $(du -sk "$p" | cut -f1)
Homepage: file:///usr/share/doc/ptxd/README.md
Description: pneumothorax triage beside a portable X-ray digitizer (not a diagnosis)
 ptxd watches a folder (or a capture device, or a DICOM port) for chest radiographs, runs
 int8 models through tract, journals every result, shows it on the attached screen and
 reports it over a serial line, to a PACS and to an MQTT broker. It is not a medical device.
CONTROL
dpkg-deb --root-owner-group -Z"$compression" --build "$p" "$out/ptxd_${version}_${arch}.deb" >/dev/null

# ptxd-models: the files as shipped, checked and made the set in use by its postinst
m="$stage/ptxd-models"
install -d "$m/usr/share/ptxd"
mv "$stage/models" "$m/usr/share/ptxd/models"
if [[ $models_dir != "$here/models" ]]; then
    # another folder's files (a release candidate, a test's tampered copy) under the same names
    for f in $(cd "$m/usr/share/ptxd/models" && find . -type f); do
        if [[ -f $models_dir/$f ]]; then cp "$models_dir/$f" "$m/usr/share/ptxd/models/$f"; fi
    done
fi
install -d "$m/DEBIAN"
install -m 0755 "$here"/deploy/deb/ptxd-models/{postinst,postrm} "$m/DEBIAN/"
cat >"$m/DEBIAN/control" <<CONTROL
Package: ptxd-models
Version: $models_version
Architecture: all
Maintainer: ptxd developers <ptxd@localhost>
Section: science
Priority: optional
Installed-Size: $(du -sk "$m" | cut -f1)
Description: int8 models for ptxd (lung fields, pneumothorax classifier, segmenter)
 The ONNX files ptxd loads, their manifests (sha256, thresholds, measured metrics) and the
 reference vectors a board checks them against. A set is used only once every file matches
 its manifest's sha256; otherwise the set in use stays. Not a medical device.
CONTROL
dpkg-deb --root-owner-group -Z"$compression" --build "$m" "$out/ptxd-models_${models_version}_all.deb" >/dev/null
echo "$out/ptxd_${version}_${arch}.deb"
echo "$out/ptxd-models_${models_version}_all.deb"
