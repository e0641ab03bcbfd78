#!/usr/bin/env bash
# The Debian packages, installed for real on this machine (root; it changes the system, so
# ./test.sh runs it only with PTXD_DEB_TEST=1, as CI does on its throwaway machine):
#   1. deploy/deb/build.sh makes ptxd (amd64, from the x86 build; arm64, from the aarch64
#      build, whose binary runs under qemu-user from the extracted package) and ptxd-models;
#   2. `apt install` of both gives a healthy service: `ptxd doctor` passes as the ptxd user,
#      and ptxd run as the unit runs it journals a radiograph;
#   3. an upgrade to a newer ptxd keeps the journal and the cursors (every file in
#      /var/lib/ptxd, byte for byte) and the edited config, and ptxd continues the journal;
#   4. a models package whose files do not match their sha256 fails to install and the
#      models in use stay; a good newer one becomes the set in use;
#   5. a signed apt repository made by reprepro, served over file:, installs a newer ptxd
#      with its signature checked, and one signed by an unknown key is refused;
#   6. purge leaves the results unless asked;
#   and what the maintainer scripts ask of systemd at each step (a stand-in systemctl).
# Usage: tests/deb/test_packages.sh X86_BINARY [AARCH64_BINARY]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
x86=$(realpath "${1:?usage: tests/deb/test_packages.sh X86_BINARY [AARCH64_BINARY]}")
a64=${2:+$(realpath "$2")}
if ((EUID != 0)); then
    echo "tests/deb/test_packages.sh: run as root (it installs the packages)" >&2
    exit 2
fi
work=$(mktemp -d)
# fast packages: the size of xz is for shipping, not for this test
export PTXD_DEB_COMPRESSION=gzip
ptxd_pid=
standin_made=
made_dirs=
cleanup() {
    [[ -n $ptxd_pid ]] && kill "$ptxd_pid" 2>/dev/null && wait "$ptxd_pid" 2>/dev/null
    dpkg --purge ptxd ptxd-models >/dev/null 2>&1 || true
    rm -rf /var/lib/ptxd /var/lib/ptxd-models /etc/ptxd "$work"
    [[ -n $standin_made ]] && rm -f /usr/local/sbin/systemctl
    # what this test made of /run/systemd, deepest first
    for dir in $made_dirs; do rmdir "$dir"; done
    true
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { echo "-- $*"; }
models_version=$(grep -o -- '-20[0-9]\{6\}"' "$here/models/manifest.toml" | tr -dc '0-9\n' | sort | tail -1)

# ptxd run as the unit runs it, until stopped; journal.log gets a record per radiograph
start_ptxd() {
    # setpriv execs ptxd itself (runuser would stand between, and end it on SIGTERM)
    setpriv --reuid=ptxd --regid=ptxd --init-groups /usr/bin/ptxd run --config /etc/ptxd/ptxd.toml 2>>"$work/ptxd.log" &
    ptxd_pid=$!
}
stop_ptxd() {
    kill -TERM "$ptxd_pid"
    wait "$ptxd_pid" || fail "ptxd did not exit cleanly on SIGTERM: $(tail -5 "$work/ptxd.log")"
    ptxd_pid=
}
records() { cat /var/lib/ptxd/journal.log 2>/dev/null | wc -l; }
analyze_one() { # NAME, then wait for the journal to hold N records
    install -d -o ptxd -g ptxd -m 0750 /var/lib/ptxd/incoming
    install -o ptxd -g ptxd -m 0640 "$here/models/reference/phantom-clear.png" "/var/lib/ptxd/incoming/$1.png"
    for _ in $(seq 600); do
        (($(records) >= $2)) && return
        sleep 0.1
    done
    fail "$1 not journaled: $(tail -5 "$work/ptxd.log")"
}
state_listing() { (cd /var/lib/ptxd && find . -type f ! -path './incoming/*' -print0 | sort -z | xargs -0 sha256sum); }

step "build: amd64 ${a64:+and arm64 }packages"
debs="$work/debs"
"$here/deploy/deb/build.sh" amd64 "$x86" "$debs" >/dev/null
PTXD_DEB_VERSION=0.1.0+next "$here/deploy/deb/build.sh" amd64 "$x86" "$work/next" >/dev/null
version=$(dpkg-deb -f "$debs"/ptxd_*_amd64.deb Version)
dpkg-deb -c "$debs"/ptxd_*_amd64.deb >"$work/contents.txt"
grep -q './usr/share/man/man1/ptxd.1.gz' "$work/contents.txt" || fail "no man page"
if [[ -n $a64 ]]; then
    PTXD_HELP_BINARY="$x86" "$here/deploy/deb/build.sh" arm64 "$a64" "$work/arm64" >/dev/null
    deb=$(ls "$work"/arm64/ptxd_*_arm64.deb)
    [[ $(dpkg-deb -f "$deb" Architecture) == arm64 ]] || fail "$deb: not arm64"
    dpkg-deb -x "$deb" "$work/arm64/root"
    dpkg-deb -x "$work"/arm64/ptxd-models_*_all.deb "$work/arm64/root"
    # the packaged binary runs (an emulated Cortex-A72, the Pi 4) and finds the packaged models
    said=$(QEMU_CPU=cortex-a72 qemu-aarch64-static "$work/arm64/root/usr/bin/ptxd" doctor --quick \
        --manifest "$work/arm64/root/usr/share/ptxd/models/manifest.toml") || fail "arm64: $said"
    [[ $(grep -c 'sha256 ok' <<<"$said") == 3 ]] || fail "arm64 doctor: $said"
    grep -q '^\[capture\]' "$work/arm64/root/usr/share/doc/ptxd/ptxd.example.toml" || fail "arm64: no example config"
fi

# No systemd runs here (CI's machine has none as PID 1). So that the maintainer scripts'
# service handling runs all the same, /run/systemd/system is made (as systemd makes it) and
# a stand-in `systemctl` in /usr/local/sbin, first on the PATH of maintainer scripts (dpkg
# passes its own; apt gives dpkg DPkg::Path, set below), writes each call to a log,
# remembering what is enabled; both go at the end. It checks what the scripts ask of
# systemd, not what systemd does with it.
standin=/usr/local/sbin/systemctl
dpkg_path=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH="/usr/local/sbin:$PATH" # for dpkg's own calls, whatever PATH this ran with
[[ -e $standin ]] && fail "$standin exists: this test puts its stand-in there"
for dir in /run/systemd /run/systemd/system; do
    [[ -d $dir ]] || { mkdir "$dir" && made_dirs="$dir $made_dirs"; }
done
export PTXD_SYSTEMCTL_LOG="$work/systemctl.log"
cat >"$standin" <<STANDIN
#!/bin/sh
echo "\$*" >>"$PTXD_SYSTEMCTL_LOG"
case "\$1" in
    enable) touch "$PTXD_SYSTEMCTL_LOG.enabled" ;;
    disable) rm -f "$PTXD_SYSTEMCTL_LOG.enabled" ;;
    is-enabled | is-active) [ -f "$PTXD_SYSTEMCTL_LOG.enabled" ] ;;
esac
STANDIN
chmod +x "$standin"
standin_made=yes
# the calls since the last look, one line each
systemctl_calls() {
    cat "$PTXD_SYSTEMCTL_LOG" 2>/dev/null | grep -v '^is-' || true
    rm -f "$PTXD_SYSTEMCTL_LOG"
}

step "install: apt install ./ptxd_${version}_amd64.deb ./ptxd-models_${models_version}_all.deb"
rm -rf /var/lib/ptxd /var/lib/ptxd-models /etc/ptxd
chmod -R a+rX "$work" # apt reads local packages as its own user where it can
apt-get install -y -q --no-install-recommends -o DPkg::Path="$dpkg_path" "$debs"/ptxd_*_amd64.deb "$debs"/ptxd-models_*_all.deb >"$work/dpkg.log" 2>&1 ||
    fail "apt install: $(cat "$work/dpkg.log")"
[[ $(readlink /var/lib/ptxd-models/current) == "$models_version" ]] || fail "models not in use"
getent passwd ptxd >/dev/null || fail "no ptxd user"
calls=$(systemctl_calls)
[[ $calls == *"enable ptxd.service"*"restart ptxd.service"* ]] || fail "a first install enables and starts the service: $calls"
[[ $(stat -c %G /etc/ptxd/ptxd.toml) == ptxd ]] || fail "/etc/ptxd/ptxd.toml not readable by ptxd"
runuser -u ptxd -- ptxd doctor --quick --config /etc/ptxd/ptxd.toml >"$work/doctor.txt" ||
    fail "doctor: $(cat "$work/doctor.txt")"
[[ $(grep -c "sha256 ok" "$work/doctor.txt") == 3 ]] || fail "doctor did not check the three models: $(cat "$work/doctor.txt")"
zcat /usr/share/man/man1/ptxd.1.gz >"$work/ptxd.1"
grep -q '^doctor' "$work/ptxd.1" || fail "the man page does not list the commands"
start_ptxd
analyze_one first 1
stop_ptxd
# the cursors of a configured serial host, PACS and MQTT broker live beside the journal
for cursor in acks.json pacs.json mqtt.json; do
    echo "{\"through\":1,\"file\":\"$cursor\"}" | runuser -u ptxd -- tee "/var/lib/ptxd/$cursor" >/dev/null
done
sed -i '/^\[watch\]/a settle_ms = 250' /etc/ptxd/ptxd.toml
before=$(state_listing)

step "upgrade: ptxd 0.1.0+next keeps the journal, the cursors and the edited config"
dpkg -i "$work"/next/ptxd_*_amd64.deb >"$work/dpkg.log" 2>&1 || fail "upgrade: $(cat "$work/dpkg.log")"
[[ $(dpkg-query -W -f '${Version}' ptxd) == 0.1.0+next ]] || fail "not upgraded"
calls=$(systemctl_calls)
[[ $calls == *"restart ptxd.service"* && $calls != *"stop ptxd.service"* && $calls != *"enable"* ]] ||
    fail "an upgrade restarts the service (and neither stops nor enables it): $calls"
[[ $(state_listing) == "$before" ]] || fail "/var/lib/ptxd changed in the upgrade: $(diff <(echo "$before") <(state_listing))"
grep -q '^settle_ms = 250' /etc/ptxd/ptxd.toml || fail "the edited config was replaced"
start_ptxd
analyze_one second 2
stop_ptxd
grep -q '"seq":2' /var/lib/ptxd/journal.log || fail "the journal did not continue"

step "models: a package whose files do not match their sha256 leaves the set in use"
cp -a "$here/models" "$work/tampered"
printf '\x01' | dd of="$work/tampered/segmenter.int8.onnx" bs=1 seek=4096 conv=notrunc status=none
PTXD_MODELS_DIR="$work/tampered" PTXD_MODELS_VERSION="$models_version.1" \
    "$here/deploy/deb/build.sh" amd64 "$x86" "$work/tampered-deb" >/dev/null
if dpkg -i "$work"/tampered-deb/ptxd-models_*_all.deb >"$work/dpkg.log" 2>&1; then
    fail "a tampered models package installed"
fi
grep -q 'segmenter.int8.onnx does not match the sha256' "$work/dpkg.log" || fail "no reason given: $(cat "$work/dpkg.log")"
[[ $(readlink /var/lib/ptxd-models/current) == "$models_version" ]] || fail "the tampered set is in use"
calls=$(systemctl_calls)
[[ -z $calls ]] || fail "refused models restarted the service: $calls"
runuser -u ptxd -- ptxd doctor --quick --config /etc/ptxd/ptxd.toml >"$work/doctor.txt" ||
    fail "doctor after the refused models: $(cat "$work/doctor.txt")"
PTXD_MODELS_VERSION="$models_version.2" "$here/deploy/deb/build.sh" amd64 "$x86" "$work/models-next" >/dev/null
dpkg -i "$work"/models-next/ptxd-models_*_all.deb >"$work/dpkg.log" 2>&1 || fail "good models: $(cat "$work/dpkg.log")"
[[ $(readlink /var/lib/ptxd-models/current) == "$models_version.2" ]] || fail "the good set is not in use"
calls=$(systemctl_calls)
[[ $calls == *"restart ptxd.service"* ]] || fail "new models restart the running service: $calls"
[[ -d /var/lib/ptxd-models/$models_version ]] || fail "the previous set was not kept for a rollback"

step "repository: reprepro, signed, over file:"
export GNUPGHOME="$work/gnupg"
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'ptxd test repository <repo@ptxd.test>' ed25519 sign 1d
gpg --batch --quiet --passphrase '' --quick-gen-key 'someone else <else@ptxd.test>' ed25519 sign 1d
repo="$work/repo"
mkdir -p "$repo/conf"
cat >"$repo/conf/distributions" <<CONF
Codename: clinic
Components: main
Architectures: amd64 arm64
SignWith: repo@ptxd.test
CONF
PTXD_DEB_VERSION=0.1.0+repo "$here/deploy/deb/build.sh" amd64 "$x86" "$work/repo-debs" >/dev/null
reprepro -b "$repo" includedeb clinic "$work"/repo-debs/ptxd_*_amd64.deb >/dev/null 2>&1
gpg --export repo@ptxd.test >"$work/clinic.gpg"
gpg --export else@ptxd.test >"$work/else.gpg"
chmod -R a+rX "$work"
apt_here() { # KEYRING, then apt-get arguments: this repository only, its own lists
    local keyring=$1
    shift
    echo "deb [signed-by=$keyring] file:$repo clinic main" >"$work/sources.list"
    apt-get -q -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$work/lists" -o APT::Sandbox::User=root -o DPkg::Path="$dpkg_path" "$@"
}
mkdir -p "$work/lists/partial"
apt_here "$work/else.gpg" update >"$work/apt.log" 2>&1 || true
grep -q 'NO_PUBKEY' "$work/apt.log" || fail "apt did not check the signature: $(cat "$work/apt.log")"
if apt_here "$work/else.gpg" install -y --download-only ptxd=0.1.0+repo >>"$work/apt.log" 2>&1; then
    fail "a package from a repository signed by an unknown key was taken: $(cat "$work/apt.log")"
fi
rm -rf "$work/lists" && mkdir -p "$work/lists/partial"
apt_here "$work/clinic.gpg" update >"$work/apt.log" 2>&1 || fail "apt update: $(cat "$work/apt.log")"
grep -q 'NO_PUBKEY\|not signed' "$work/apt.log" && fail "signature: $(cat "$work/apt.log")"
apt_here "$work/clinic.gpg" install -y --no-install-recommends ptxd=0.1.0+repo >"$work/apt.log" 2>&1 ||
    fail "apt install: $(cat "$work/apt.log")"
[[ $(dpkg-query -W -f '${Version}' ptxd) == 0.1.0+repo ]] || fail "not installed from the repository"
[[ $(state_listing | grep -c journal.log) == 1 ]] || fail "the journal is gone"

step "purge: the results stay unless asked"
dpkg --purge ptxd ptxd-models >"$work/dpkg.log" 2>&1 || fail "purge: $(cat "$work/dpkg.log")"
[[ -f /var/lib/ptxd/journal.log ]] || fail "purge removed the journal without being asked"
calls=$(systemctl_calls)
[[ $calls == *"stop ptxd.service"*"disable ptxd.service"* ]] || fail "removal stops and disables the service: $calls"
[[ ! -e /var/lib/ptxd-models ]] || fail "purging ptxd-models left its sets"
[[ ! -e /usr/bin/ptxd ]] || fail "purge left the binary"
echo "packages: all checks passed"
