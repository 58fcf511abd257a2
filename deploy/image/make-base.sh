#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim with debootstrap, for machines that can reach Debian's
# package mirror but no container registry. Usage: deploy/image/make-base.sh TAG
#
# The result is Debian bookworm (minbase) with its Python 3.11, pip and the OpenMP runtime Paddle needs,
# imported into podman as TAG. Like python:3.11-slim, its Python is not marked externally managed, so
# the Dockerfile's `pip install` works unchanged. The machine's CA bundle and pip settings are copied in
# so that the build can reach the same package index through the same TLS proxy as this machine does:
# that makes the base specific to this machine, which is why it is built here and never pushed.
set -euo pipefail
tag=${1:?usage: make-base.sh TAG}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /var/tmp/ocr-base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-pip,libgomp1,ca-certificates \
    bookworm "$rootfs" "$mirror"

rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$rootfs/etc/pip.conf"; fi
# python:3.11-slim answers to `python3` and `python`; so does this base.
ln -sf python3 "$rootfs/usr/bin/python"
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin

tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$tag"
