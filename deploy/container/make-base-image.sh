#!/usr/bin/env bash
# Makes relay's base image without an image registry: Debian bookworm (minbase + python3, venv, CA certificates)
# from debootstrap, imported into podman. Does nothing when the image already exists, so reruns are fast.
#   deploy/container/make-base-image.sh [IMAGE]     (default localhost/relay-base:bookworm; needs root)
# DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
set -euo pipefail

image=${1:-localhost/relay-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if podman image exists "$image"; then
  echo "make-base-image: $image exists"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# What a container never reads: downloaded packages, apt lists, docs, man pages, translations, the host's files.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
  "$rootfs"/var/cache/debconf/*-old "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf

tar --numeric-owner -C "$rootfs" -c . \
  | podman import --change 'CMD ["/bin/bash"]' --message "debootstrap bookworm minbase + python3" - "$image"
echo "make-base-image: $image made"
