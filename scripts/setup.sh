#!/bin/bash
# Install what xenpanel needs on a Debian 12 machine and build the venv.
#   scripts/setup.sh          the panel (run)
#   scripts/setup.sh --dev    the panel plus everything the test suite needs
# Debian packages are installed only when missing, and only as root; a
# non-root user who lacks one is told which to install.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1

need=(python3 python3-venv redis-server)
# cmd:package pairs, checked by command so a machine that has them never calls apt.
checks=("python3:python3" "redis-server:redis-server")
if [ $dev = 1 ]; then
  checks+=("chromium:chromium" "chromedriver:chromium-driver" "qemu-system-x86_64:qemu-system-x86"
           "debootstrap:debootstrap" "cpio:cpio" "mkfs.ext4:e2fsprogs" "e2cp:e2tools" "lvcreate:lvm2"
           "rsync:rsync" "ssh:openssh-client" "ssh-keygen:openssh-client" "gcc:gcc" "msgfmt:gettext"
           "losetup:mount" "file:file")
  [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || checks+=("busybox-static-missing:busybox-static")
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || checks+=("python3-venv-missing:python3-venv")
missing=()
for c in "${checks[@]}"; do
  command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages first: ${missing[*]}" >&2
    exit 1
  fi
fi

req=requirements.txt; [ $dev = 1 ] && req=requirements-dev.txt
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-$dev
if [ ! -e "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  rm -f .venv/.installed-*; touch "$stamp"
  [ $dev = 1 ] && touch ".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-0"
fi
echo "setup: venv ready (.venv)"
