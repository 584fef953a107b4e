#!/usr/bin/env bash
# Prepares this machine for the container test (tests/test_container_stack.py) and prints
# the environment it needs (KEY=VALUE lines):
#   1. podman, buildah, debootstrap, runc from Debian's packages (apt-get, as root), if any
#      is missing;
#   2. the Dockerfile's base image, made locally: no image registry is reachable here, so
#      `debian:bookworm-slim` is rebuilt from Debian's own packages the way it is made
#      (debootstrap --variant=minbase) and imported into podman.
# Idempotent; the base is cached per machine in /var/cache/glisk-containers (a tarball keyed
# by everything that goes into it) and in podman's storage (scripts/podman/storage.conf).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=/var/cache/glisk-containers
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="$PWD/scripts/podman/storage.conf"
log() { echo "containers: $*" >&2; }
fail() { echo "containers: $*" >&2; exit 1; }

# --- 1. the tools -------------------------------------------------------------------------
missing=()
for tool in podman buildah debootstrap runc; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}: run as root (apt-get install podman buildah debootstrap runc)"
  log "installing podman buildah debootstrap runc (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends podman buildah debootstrap runc uidmap \
    slirp4netns catatonit >&2
fi
[ "$(id -u)" = 0 ] || fail "the container test runs rootful podman: run it as root"

# --- 2. the base image --------------------------------------------------------------------
# The Debian mirror this machine's apt uses (deb822 sources or a classic sources.list).
mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -v -- '-security' | head -1)"
[ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $2 !~ /\[/ && $3 == "bookworm" {print $2; exit}' \
  /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources*"
security="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*-security[^[:space:]]*\).*/\1/p' \
  /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
security="${security:-${mirror%/debian}/debian-security}"

# The machine's extra certificate authorities: where TLS is intercepted on the way out,
# pip and uv inside a build reach PyPI only if the base trusts them. They are copied where
# Debian's ca-certificates package picks them up (update-ca-certificates), so the
# Dockerfile's own `apt-get install ca-certificates` adds them to the system bundle.
ca_files=(/usr/local/share/ca-certificates/*.crt)
[ -e "${ca_files[0]}" ] || ca_files=()

# bump rootfs_version when the root filesystem's recipe changes, image_version when the
# import's image settings do
rootfs_version=2
image_version=2
key="$( { echo "$rootfs_version bookworm minbase $mirror $security"; cat "${ca_files[@]}" /dev/null; } \
  | sha256sum | cut -c1-16)"
image="localhost/glisk-debian-base:bookworm-$key-$image_version"
tarball="$CACHE/debian-bookworm-minbase-$key.tar"

if ! podman image exists "$image"; then
  mkdir -p "$CACHE"
  if [ ! -s "$tarball" ]; then
    log "building the base from Debian packages (debootstrap minbase bookworm, $mirror)"
    rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    chmod 755 "$rootfs"  # it becomes the image's `/` (mktemp makes it 0700: no other user)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
    # The apt sources debian:bookworm-slim ships (main, updates, security), on this mirror.
    rm -f "$rootfs/etc/apt/sources.list"
    cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    [ ${#ca_files[@]} -eq 0 ] || cp "${ca_files[@]}" "$rootfs/usr/local/share/ca-certificates/"
    # as the slim image: no package lists, no apt cache
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  log "importing $tarball as $image"
  # pip and uv read their trust store from these (their own bundled roots otherwise); the
  # file exists once the Dockerfile has installed ca-certificates.
  # PATH as debian:bookworm-slim's image sets it (an imported image has none).
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["bash"]' \
    "$tarball" "$image" >&2
fi

echo "CONTAINERS_CONF=$CONTAINERS_CONF"
echo "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
echo "GLISK_BASE_IMAGE=$image"
