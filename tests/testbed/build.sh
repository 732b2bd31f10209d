#!/bin/bash
# Build xenpanel's Xen testbed: Xen 4.17 + a Debian 12 PV dom0 that boots under
# QEMU TCG (no KVM needed), with real device-mapper LVM, xl and a tiny guest.
#
#   tests/testbed/build.sh [OUTDIR]   (default $XENPANEL_TESTBED_DIR or /var/tmp/xenpanel-testbed)
#
# Runs as root on Debian 12 and installs the few host packages it needs. Every
# input comes from Debian bookworm (apt-get download, debootstrap, apt in a
# chroot). Steps are cached: nothing is redone when the stamp (a hash of this
# script, the overlay and the Debian package versions) matches the last build.
#
# Produces in OUTDIR:
#   xen          Xen ELF (QEMU loads it with -kernel, multiboot)
#   vmlinux      Debian 6.1 kernel (uncompressed ELF): dom0 and guests boot the same one
#   initrd.img   busybox initrd: loads the block/fs modules, switch_root to root=
#   dom0.img     ext4 dom0 root, run with snapshot=on (so it is never modified)
#   ssh/id_ed25519  key for root@dom0 (sshd is reachable only via a 127.0.0.1 hostfwd)
# Inside dom0.img:
#   /boot/vmlinux-domu, /boot/initrd-domu.img   kernel + initrd for guests
#   /srv/xenpanel/templates/tiny/               bootable guest root DIRECTORY (mkfs.ext4 -d)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${XENPANEL_TESTBED_DIR:-/var/tmp/xenpanel-testbed}}
SUITE=bookworm
DOM0_IMG_SIZE=${DOM0_IMG_SIZE:-2560M}
# Everything the dom0 needs; later issues run an xenpanel RQ worker there (python3 + venv).
DOM0_PACKAGES=(kmod udev procps iproute2 bridge-utils lvm2 thin-provisioning-tools e2fsprogs e2tools
  util-linux python3 python3-venv openssh-server busybox-static rsync iputils-ping)
log() { echo "[build $(date +%T)] $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mkfs)"
case "$OUT" in *,*) die "OUTDIR must not contain a comma (QEMU option syntax)";; esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# One build at a time per OUTDIR (parallel test sessions share it); a waiter
# then finds the stamp up to date.
exec 9>"$OUT/.build.lock"
flock 9

# ------------------------------------------------------------ host packages
missing=()
for pair in qemu-system-x86_64:qemu-system-x86 debootstrap:debootstrap cpio:cpio mkfs.ext4:e2fsprogs \
            rsync:rsync ssh-keygen:openssh-client ssh:openssh-client file:file; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing host packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ------------------------------------------------------------ versions + stamp
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
XENVER=$(candidate xen-hypervisor-4.17-amd64)
if [ -z "$XENVER" ] || [ "$XENVER" = "(none)" ]; then
  apt-get update -q
  XENVER=$(candidate xen-hypervisor-4.17-amd64)
fi
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
KV=${KPKG#linux-image-}
[ -n "$XENVER" ] && [ -n "$KV" ] || die "cannot find xen-hypervisor-4.17-amd64 / linux-image-amd64 in apt"
ROOTFS_KEY=$(echo "$SUITE ${DOM0_PACKAGES[*]} $XENVER" | sha256sum | cut -c1-16)
# xenpanel's venv is part of the image when the caller names the requirements
# (testbed.py's build() does): pip under emulation takes 4-5 minutes in dom0,
# in the chroot here it takes seconds.
REQUIREMENTS=${XENPANEL_TESTBED_REQUIREMENTS:-}
WHEELS_PYTHON=${XENPANEL_TESTBED_PYTHON:-python3}
[ -z "$REQUIREMENTS" ] || [ -f "$REQUIREMENTS" ] || die "XENPANEL_TESTBED_REQUIREMENTS=$REQUIREMENTS is not a file"
STAMP=$( (cat "$HERE/build.sh"; find "$HERE/overlay" -type f | LC_ALL=C sort | xargs cat; echo "$KV $XENVER $DOM0_IMG_SIZE"
  [ -z "$REQUIREMENTS" ] || cat "$REQUIREMENTS") | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ] &&
   [ -e "$OUT/xen" ] && [ -e "$OUT/vmlinux" ] && [ -e "$OUT/initrd.img" ] && [ -e "$OUT/dom0.img" ]; then
  log "up to date ($OUT, stamp $STAMP)"
  exit 0
fi
log "building in $OUT: kernel $KV, xen $XENVER, stamp $STAMP"
rm -f "$OUT/.stamp"

# ------------------------------------------------------------ Xen + kernel (apt-get download)
if [ ! -e "$OUT/extract/.done-$KV-$XENVER" ]; then
  rm -rf "$OUT/debs" "$OUT/extract"; mkdir -p "$OUT/debs" "$OUT/extract"
  (cd "$OUT/debs" && apt-get download -q "$KPKG" "xen-hypervisor-4.17-amd64=$XENVER")
  for f in "$OUT"/debs/*.deb; do dpkg-deb -x "$f" "$OUT/extract"; done
  touch "$OUT/extract/.done-$KV-$XENVER"
fi
zcat "$OUT/extract/boot/xen-4.17-amd64.gz" > "$OUT/.new-xen"
# The kernel as a plain ELF (vmlinux), for dom0 and for guests. Xen and libxl
# accept it as well as the xz-compressed bzImage, and unpacking 66 MB of xz
# under TCG is slow: measured here, the domain-build part of `xl create` went
# from 13-22 s to 4-9 s (at every guest start and reboot), and the dom0 boot
# reached its initrd after 12 s instead of 17 s.
python3 - "$OUT/extract/boot/vmlinuz-$KV" "$OUT/.new-vmlinux" <<'PY'
import lzma, sys
image = open(sys.argv[1], "rb").read()
start = image.find(b"\xfd7zXZ\x00")  # the payload of an xz-compressed bzImage (Debian's)
elf = lzma.LZMADecompressor().decompress(image[start:]) if start >= 0 else b""
if not elf.startswith(b"\x7fELF"):
    sys.exit(f"no xz-compressed ELF kernel found in {sys.argv[1]}")
open(sys.argv[2], "wb").write(elf)
PY

# ------------------------------------------------------------ dom0 root (debootstrap + apt in chroot)
R="$OUT/dom0root"
unmount_under() {  # never leave the host's /dev bind-mounted into a tree we may delete
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$1/" | sort -r); do umount -l "$m" || true; done
}
trap 'unmount_under "$R"; unmount_under "$OUT/stage"' EXIT
if [ ! -e "$R/.rootfs-$ROOTFS_KEY" ]; then
  unmount_under "$R"; rm -rf --one-file-system "$R"
  # The mirror apt already uses on this machine; deb.debian.org otherwise.
  MIRROR=${MIRROR:-$( (grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
    2>/dev/null || true) | head -n1 | tr -d ' ')}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  log "debootstrap minbase from $MIRROR"
  debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" > "$OUT/debootstrap.log" 2>&1 ||
    { tail -n 30 "$OUT/debootstrap.log"; die "debootstrap failed (log: $OUT/debootstrap.log)"; }
  # Same sources as the host (bookworm, -updates, -security), so xen-utils can be pinned
  # to exactly the hypervisor version downloaded above.
  rm -f "$R/etc/apt/sources.list"
  cp -a /etc/apt/sources.list.d/. "$R/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -e /etc/apt/sources.list ] && cp /etc/apt/sources.list "$R/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
  mount -t proc proc "$R/proc"; mount --bind /dev "$R/dev"
  log "apt-get install in chroot: xen-utils-4.17=$XENVER ${DOM0_PACKAGES[*]}"
  chroot "$R" apt-get update -q >/dev/null
  chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "xen-utils-4.17=$XENVER" "xen-utils-common=$XENVER" "xenstore-utils=$XENVER" "${DOM0_PACKAGES[@]}" \
    > "$OUT/apt.log" 2>&1 || { tail -n 30 "$OUT/apt.log"; die "apt-get install failed (log: $OUT/apt.log)"; }
  chroot "$R" apt-get clean
  unmount_under "$R"
  rm -f "$R/usr/sbin/policy-rc.d"
  touch "$R/.rootfs-$ROOTFS_KEY"
fi

# ------------------------------------------------------------ stage: root + modules + overlay
# The stage is a fresh copy of the cached root, so files dropped from the overlay
# never linger in the image.
S="$OUT/stage"
log "stage: copy root, kernel modules, overlay"
unmount_under "$S"
rsync -a --delete --exclude='/.rootfs-*' "$R/" "$S/"
# Modules for the emulated hardware, Xen backends/frontends, device-mapper and
# filesystems; sound/GPU/wireless etc. would only make the image bigger.
mkdir -p "$S/lib/modules"
rsync -a --delete --exclude=kernel/sound --exclude=kernel/drivers/gpu --exclude=kernel/drivers/media \
  --exclude=kernel/drivers/net/wireless --exclude=kernel/drivers/infiniband --exclude=kernel/drivers/staging \
  --exclude=kernel/drivers/iio --exclude=kernel/drivers/bluetooth \
  "$OUT/extract/lib/modules/$KV" "$S/lib/modules/"
chroot "$S" depmod -a "$KV"
cp -a "$HERE/overlay/dom0/." "$S/"
# bridge-utils' ifupdown hook runs a shell script for every new vif: work for
# nothing here (no ifupdown), and emulated CPU is what xl create waits on.
rm -f "$S/lib/udev/rules.d/60-bridge-network-interface.rules"
chmod 755 "$S"/etc/xenpanel-testbed/*
for a in init poweroff reboot halt; do ln -sf /bin/busybox "$S/sbin/$a"; done
mkdir -p "$OUT/ssh" "$S/root/.ssh" "$S/etc/xen/auto"
[ -e "$OUT/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C xenpanel-testbed -f "$OUT/ssh/id_ed25519"
install -m 600 "$OUT/ssh/id_ed25519.pub" "$S/root/.ssh/authorized_keys"
chmod 700 "$S/root/.ssh"

# ------------------------------------------------------------ xenpanel's venv (optional)
# Built the way Testbed.install_xenpanel() would build it in dom0 (dom0's own
# python3 and Debian's pip wheel, the pinned wheels downloaded on this host),
# but natively, in the chroot. install_xenpanel() finds the wheel list in
# .xenpanel-wheels and then only copies the project's code.
if [ -n "$REQUIREMENTS" ]; then
  DOM0_PY=$(chroot "$S" python3 -c 'import platform; print(platform.python_version())')
  HOUSE=$("$WHEELS_PYTHON" "$HERE/testbed.py" wheels "$REQUIREMENTS" "$DOM0_PY" "$OUT") ||
    die "downloading the wheels for dom0's python $DOM0_PY failed"
  log "xenpanel venv in /opt/xenpanel/.venv (python $DOM0_PY, wheels $HOUSE)"
  V=/opt/xenpanel/.venv
  rm -rf "$S/opt/xenpanel" "$S/tmp/xenpanel-wheels"; mkdir -p "$S/tmp/xenpanel-wheels"
  cp "$HOUSE"/*.whl "$S/tmp/xenpanel-wheels/"; cp "$REQUIREMENTS" "$S/tmp/xenpanel-wheels/requirements.txt"
  PIP_WHL=$(cd "$S" && ls usr/share/python-wheels/pip-*.whl | tail -n 1)
  [ -n "$PIP_WHL" ] || die "the dom0 root has no pip wheel (python3-pip-whl)"
  mount -t proc proc "$S/proc"
  chroot "$S" python3 -m venv --without-pip "$V"
  chroot "$S" "$V/bin/python" "/$PIP_WHL/pip" install --quiet --disable-pip-version-check --no-index \
    --find-links /tmp/xenpanel-wheels -r /tmp/xenpanel-wheels/requirements.txt
  umount "$S/proc"
  (cd "$HOUSE" && ls -1 -- *.whl | LC_ALL=C sort) > "$S$V/.xenpanel-wheels"
  rm -rf "$S/tmp/xenpanel-wheels"
fi

# ------------------------------------------------------------ initrd (dom0 loader and guests share it)
BUSYBOX="$S/bin/busybox"  # busybox-static from the dom0 root: the same binary goes everywhere
file -L "$BUSYBOX" | grep -q 'statically linked' || die "$BUSYBOX is not static"
log "initrd"
W="$OUT/work-initrd"
rm -rf "$W"; mkdir -p "$W"/{bin,sbin,proc,sys,dev,newroot,modules}
cp "$BUSYBOX" "$W/bin/busybox"
install -m 755 "$HERE/overlay/initrd/init" "$W/init"
add_modules() {  # $1 = list file name, rest = modules (dependencies resolved by modprobe)
  local list=$1 m p; shift
  : > "$W/$list"
  for m in "$@"; do
    for p in $(chroot "$S" modprobe -S "$KV" --show-depends "$m" | awk '$1 == "insmod" {print $2}'); do
      cp -n "$S$p" "$W/modules/"
      grep -qx "$(basename "$p")" "$W/$list" || basename "$p" >> "$W/$list"
    done
  done
}
add_modules modules.dom0 virtio_pci virtio_blk crc32c_generic ext4
add_modules modules.domu xen-blkfront xen-netfront crc32c_generic ext4
(cd "$W" && find . | cpio -o -H newc --quiet | gzip -6 > "$OUT/.new-initrd.img")
mkdir -p "$S/boot"
cp "$OUT/.new-vmlinux" "$S/boot/vmlinux-domu"
cp "$OUT/.new-initrd.img" "$S/boot/initrd-domu.img"

# ------------------------------------------------------------ guest template directory
# A busybox root (about 2 MB) instead of a debootstrap one (about 200 MB): under
# TCG a systemd guest takes minutes to boot and every clone writes 100x more,
# while this one boots in seconds and still exercises the same per-guest files
# (/etc/hostname, hosts, network/interfaces, fstab) that xenpanel writes.
log "guest template"
T="$S/srv/xenpanel/templates/tiny"
rm -rf "$T"; mkdir -p "$T"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,root,var/log,mnt}
chmod 1777 "$T/tmp"; chmod 700 "$T/root"
cp "$BUSYBOX" "$T/bin/busybox"
for a in $("$BUSYBOX" --list-full); do
  [ -e "$T/$a" ] || ln -s /bin/busybox "$T/$a"
done
cp -a "$HERE/overlay/guest/." "$T/"
chmod 755 "$T"/etc/init.d/*
chmod 640 "$T/etc/shadow"

# ------------------------------------------------------------ dom0 image
log "dom0.img ($DOM0_IMG_SIZE)"
rm -f "$OUT/.new-dom0.img"
mkfs.ext4 -q -F -L xenpanel-dom0 -E root_owner=0:0 -d "$S" "$OUT/.new-dom0.img" "$DOM0_IMG_SIZE"
# Renamed into place only now, together: a testbed that is running keeps the
# files it opened, and one that starts meanwhile never sees a half-written one.
for f in xen vmlinux initrd.img dom0.img; do mv -f "$OUT/.new-$f" "$OUT/$f"; done
rm -f "$OUT/vmlinuz"  # the compressed kernel of older builds
echo "$STAMP" > "$OUT/.stamp"
log "done: dom0.img uses $(du -sh "$OUT/dom0.img" | cut -f1) (apparent $DOM0_IMG_SIZE)"
