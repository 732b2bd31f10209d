#!/bin/bash
# Install what xenpanel needs on a Debian 12 machine and build the venv.
#   scripts/setup.sh          the panel (make run)
#   scripts/setup.sh --dev    the panel plus everything the test suite needs (make test)
# Debian packages are installed only when missing, and only as root; anyone
# else who lacks one is told which to install. A machine that has everything
# never calls apt or pip, so a second run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1

# command:package pairs, checked by command.
checks=("python3:python3")
# A Redis elsewhere (REDIS_URL) needs no local server; ensure_redis.py starts
# a private one from this package when nothing answers on 127.0.0.1:6379.
[ -z "${REDIS_URL:-}" ] && checks+=("redis-server:redis-server")
# python-ldap (campus login) has no wheel: pip compiles it against OpenLDAP's and SASL's headers.
checks+=("gcc:gcc")
[ -e /usr/include/ldap.h ] || checks+=("libldap2-dev-missing:libldap2-dev")
[ -e /usr/include/sasl/sasl.h ] || checks+=("libsasl2-dev-missing:libsasl2-dev")
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  2>/dev/null || checks+=("python3-dev-missing:python3-dev")
if [ $dev = 1 ]; then
  checks+=("chromium:chromium" "chromedriver:chromium-driver" "qemu-system-x86_64:qemu-system-x86"
           "qemu-img:qemu-utils"
           "debootstrap:debootstrap" "cpio:cpio" "mkfs.ext4:e2fsprogs" "e2cp:e2tools" "lvcreate:lvm2"
           "rsync:rsync" "ssh:openssh-client" "ssh-keygen:openssh-client" "gcc:gcc" "msgfmt:gettext"
           "losetup:mount" "file:file" "nginx:nginx" "openssl:openssl" "redis-server:redis-server")
  # The campus login tests start a real slapd of their own (slapadd loads its config and entries).
  checks+=("/usr/sbin/slapd:slapd" "/usr/sbin/slapadd:slapd" "ldapsearch:ldap-utils")
  # tests/core/test_deploy_guide.py installs the panel server as deploy/README.md says, on a throwaway
  # cluster made with Debian's PostgreSQL server programs.
  [ "$(dpkg-query -W -f='${db:Status-Status}' postgresql 2>/dev/null)" = installed ] \
    || checks+=("postgresql-missing:postgresql")
  # The testbed's initramfs needs a static busybox, which the dynamic busybox package does not give.
  [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
    || checks+=("busybox-static-missing:busybox-static")
  # tests/xlcheck compiles its LD_PRELOAD shim; gcc without recommends may lack libc headers.
  [ -e /usr/include/stdio.h ] || checks+=("libc6-dev-missing:libc6-dev")
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
    apt-get update -q >/dev/null || { echo "setup: apt-get update failed" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
      || { echo "setup: could not install ${missing[*]}; install them and run again" >&2; exit 1; }
  else
    echo "setup: please install these Debian packages first (as root): apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

req=requirements.txt; [ $dev = 1 ] && req=requirements-dev.txt
hash=$(cat requirements-dom0.txt requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
stamp=.venv/.installed-$hash-$dev
if [ ! -e "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  rm -f .venv/.installed-*
  touch "$stamp"
  # The dev set includes the panel's, so `make run` after `make test` installs nothing.
  if [ $dev = 1 ]; then touch ".venv/.installed-$hash-0"; fi
fi
echo "setup: venv ready (.venv)"
