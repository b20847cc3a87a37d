#!/usr/bin/env bash
# Set up diskkit on Debian 12: the Debian packages it drives, a virtual environment made from
# Debian's own Python (so the Debian-only bindings python3-rbd/rados/guestfs/parted/libnbd
# import), and diskkit installed into it. Idempotent: a second run checks and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  # image tools and the qemu rbd driver
  qemu-utils qemu-block-extra qemu-system-x86 nbdkit nbd-client fuse3
  # firmware for boot tests
  seabios ovmf
  # libguestfs, its Python binding and a kernel for its appliance and for test VMs
  libguestfs-tools python3-guestfs linux-image-amd64 busybox-static
  # attach/mount backends: guestmount (libguestfs FUSE), qemu-storage-daemon, dmsetup
  guestmount qemu-system-common dmsetup
  # partitioning, device mapper, LVM
  kpartx lvm2 parted python3-parted gdisk fdisk
  # filesystems and boot loaders used to build and check test images
  e2fsprogs xfsprogs btrfs-progs dosfstools mtools squashfs-tools ntfs-3g cryptsetup-bin
  xorriso syslinux-utils isolinux syslinux syslinux-common grub-pc-bin grub-efi-amd64-bin zstd xz-utils
  # real boot loaders the boot-code rules are tested with (install-mbr, shim)
  mbr shim-unsigned
  # Ceph: a test cluster and the librbd/librados bindings
  ceph-mon ceph-osd ceph-common python3-rbd python3-rados
  # guest OS inspection: Windows hives (python3-hivex, hivexregedit for tests), libosinfo ids,
  # YAML (cloud-init config), and what tests build initramfs images with
  python3-hivex libwin-hivex-perl osinfo-db python3-yaml cpio lz4 sqlite3 initramfs-tools-core rpm
  # NBD client library binding
  python3-libnbd
  # the interpreter the venv is made from (python3-dev, gcc: the libyal bindings build from source)
  python3 python3-venv python3-pip python3-dev gcc
  # guest filesystem test images: UDF, ISO with Joliet/Rock Ridge and UDF bridge
  udftools genisoimage
  # real Debian 12 test images (tests/fixtures/debian.py): debootstrap from the Debian archive
  debootstrap
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (apt-get needs it), or install them yourself" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libguestfs needs a readable kernel image to build its appliance (Debian ships it 0600).
chmod 0644 /boot/vmlinuz-* 2>/dev/null || true

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.diskkit-setup-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ] || [ ! -x .venv/bin/diskkit ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  # compat: a plain path in a .pth file (the default editable finder costs ~15 ms per start)
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
  rm -f .venv/.diskkit-setup-*
  touch "$stamp"
fi
.venv/bin/python -c "import rbd, rados, guestfs, parted, nbd, pycdlib, rich" \
  || { echo "setup: the Python bindings do not import in .venv" >&2; exit 1; }
echo "setup: ready (.venv/bin/diskkit)"
