#!/usr/bin/env bash
# tools/oci/ledger-image.sh: the issuance ledger as a reproducible OCI image layout, from
# scratch: one static binary, no shell, no package manager.
#
#   tools/oci/ledger-image.sh BINARY OUT [TAG]
#
# OUT/registry-token-ledger/        the OCI layout (index.json names TAG, default the version)
# OUT/registry-token-ledger.digest  its manifest digest
#
# The image: /usr/local/bin/registry-token-ledger (the entrypoint, 0555 root), user
# ledger 65532:65532 (/etc/passwd, /etc/group), /data owned by it (0700, the data
# volume: SQLite's file, TMPDIR), /tmp (1777, for a tmpfs when the root is read-only).
# It runs with a read-only root file system; SIGTERM stops it cleanly (the ledger
# handles it as PID 1). Defaults in its environment: LEDGER_LISTEN=0.0.0.0:8086,
# LEDGER_DATABASE=sqlite:///data/ledger.db; everything else (LEDGER_ISSUER,
# LEDGER_JWKS_URL, LEDGER_INGEST_SECRET, a postgres:// LEDGER_DATABASE, …) comes from
# the container's environment (docs/LEDGER.md). Prints the manifest digest last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -ge 2 ] || { echo "usage: $0 BINARY OUT [TAG]" >&2; exit 2; }
bin=$1 out=$2
[ -f "$bin" ] || { echo "$0: $bin not found (make ledger-image builds it)" >&2; exit 2; }
# FROM scratch has no loader nor libc: refuse a dynamically linked binary.
if command -v readelf >/dev/null && readelf -l "$bin" | grep -q 'INTERP'; then
  echo "$0: $bin is dynamically linked; build it for x86_64-unknown-linux-musl" >&2
  exit 2
fi
version=${VERSION:-$(oci_version "$root")}
revision=${REVISION:-$(oci_revision "$root")}
tag=${3:-$version}
epoch=$(oci_epoch "$root")
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
uid=65532

mkdir -p "$out"
layout="$out/registry-token-ledger"
oci_init "$layout"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/etc" "$stage/usr/local/bin" "$stage/data" "$stage/tmp"
printf 'root:x:0:0:root:/:/sbin/nologin\nledger:x:%s:%s:registry-token-ledger:/data:/sbin/nologin\n' \
  "$uid" "$uid" > "$stage/etc/passwd"
printf 'root:x:0:\nledger:x:%s:\n' "$uid" > "$stage/etc/group"
install -m 0555 "$bin" "$stage/usr/local/bin/registry-token-ledger"
chmod 0755 "$stage/etc" "$stage/usr" "$stage/usr/local" "$stage/usr/local/bin"
chmod 0644 "$stage/etc/passwd" "$stage/etc/group"
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/data"
oci_tar "$stage" "$stage/layer.tar" "$epoch" 0:0 \
  etc etc/group etc/passwd tmp usr usr/local usr/local/bin usr/local/bin/registry-token-ledger
oci_tar "$stage" "$stage/layer.tar" "$epoch" "$uid:$uid" data
read -r diff_id layer_digest layer_size < <(oci_layer "$layout" "$stage/layer.tar")

labels=$(jq -n --arg v "$version" --arg r "$revision" --arg c "$created" \
  '{"org.opencontainers.image.version": $v, "org.opencontainers.image.revision": $r,
    "org.opencontainers.image.created": $c,
    "org.opencontainers.image.title": "registry-token-ledger",
    "org.opencontainers.image.description": "registry-token-filter issuance ledger (docs/LEDGER.md)"}')
config=$(jq -n --arg diff "$diff_id" --arg created "$created" --arg user "$uid:$uid" \
  --argjson labels "$labels" \
  '{architecture: "amd64", os: "linux", created: $created,
    config: {User: $user, Entrypoint: ["/usr/local/bin/registry-token-ledger"],
             Env: ["PATH=/usr/local/bin", "LEDGER_LISTEN=0.0.0.0:8086",
                   "LEDGER_DATABASE=sqlite:///data/ledger.db", "TMPDIR=/data"],
             ExposedPorts: {"8086/tcp": {}}, Volumes: {"/data": {}},
             WorkingDir: "/data", StopSignal: "SIGTERM", Labels: $labels},
    rootfs: {type: "layers", diff_ids: [$diff]},
    history: [{created: $created, created_by: "tools/oci/ledger-image.sh"}]}')
layers=$(jq -n --arg lt "$OCI_LAYER_TYPE" --arg d "$layer_digest" --argjson s "$layer_size" \
  '[{mediaType: $lt, digest: $d, size: $s}]')
digest=$(oci_finish "$layout" "$tag" "$config" "$layers" "$labels")
printf '%s\n' "$digest" > "$out/registry-token-ledger.digest"
echo "layout:   oci:$layout:$tag (version $version, revision $revision)"
echo "$digest"
