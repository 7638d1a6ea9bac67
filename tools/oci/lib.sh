# tools/oci/lib.sh: the pieces of a reproducible OCI image layout, sourced by
# wasm-image.sh (the filter module) and ledger-image.sh (the ledger).
#
# Same inputs, same bytes: the tar layers have fixed owners, modes, mtimes and order
# (ustar, no PAX times), gzip -n writes no name or time, every JSON document is compact
# with sorted keys (jq -cS) and has no trailing newline.
#
# Why shell and jq, not a crate (oci-spec, ocipkg): a layout is a handful of fixed files;
# the crate would check the documents against the spec's types, which the tests do instead
# by reading them back with skopeo, the registry, podman and istio-agent's rules.

set -euo pipefail

for tool in jq tar gzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is required" >&2; exit 2; }
done

OCI_MANIFEST_TYPE=application/vnd.oci.image.manifest.v1+json
OCI_INDEX_TYPE=application/vnd.oci.image.index.v1+json
OCI_CONFIG_TYPE=application/vnd.oci.image.config.v1+json
OCI_LAYER_TYPE=application/vnd.oci.image.layer.v1.tar+gzip

# oci_init DIR: an empty layout (oci-layout file, blobs/sha256/), DIR removed first.
oci_init() {
  rm -rf "$1"
  mkdir -p "$1/blobs/sha256"
  printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$1/oci-layout"
}

# oci_blob DIR FILE: moves FILE into DIR's blobs; prints "sha256:<hex> <size>".
oci_blob() {
  local hex size
  hex=$(sha256sum "$2" | cut -d' ' -f1)
  size=$(stat -c %s "$2")
  mv -f "$2" "$1/blobs/sha256/$hex"
  chmod 0644 "$1/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}

# oci_json FILE: rewrites the JSON of standard input as compact, key-sorted, no newline.
oci_json() {
  jq -cSj . > "$1"
}

# oci_tar STAGE OUT EPOCH UIDGID PATH...: appends PATHs (relative to STAGE, in the order
# given, not recursing into directories) to the uncompressed tar OUT, owned by UIDGID
# (numeric, "uid:gid"), mtime EPOCH. Modes are taken from STAGE: set them first.
oci_tar() {
  local stage=$1 out=$2 epoch=$3 owner=$4
  shift 4
  local mode=-cf
  [ -e "$out" ] && mode=-rf
  tar $mode "$out" -C "$stage" --format=ustar --no-recursion --numeric-owner \
    --owner="${owner%%:*}" --group="${owner##*:}" --mtime="@$epoch" -- "$@"
}

# oci_layer DIR TAR: gzips TAR (-9n) into DIR's blobs. Prints "sha256:<diff id>
# sha256:<blob> <size>" (diff id: the uncompressed tar's digest, for the config).
oci_layer() {
  local diff gz
  diff=$(sha256sum "$2" | cut -d' ' -f1)
  gz="$2.gz"
  gzip -9n < "$2" > "$gz"
  rm -f "$2"
  echo "sha256:$diff $(oci_blob "$1" "$gz")"
}

# oci_finish DIR TAG CONFIG_JSON LAYERS_JSON ANNOTATIONS_JSON: writes the config, the
# manifest and index.json (TAG as org.opencontainers.image.ref.name); prints the
# manifest digest.
oci_finish() {
  local dir=$1 tag=$2 config=$3 layers=$4 annotations=$5
  local tmp cfg cfg_digest cfg_size man man_digest man_size
  tmp=$(mktemp "$dir/.tmp.XXXXXX")
  printf '%s' "$config" | oci_json "$tmp"
  read -r cfg_digest cfg_size < <(oci_blob "$dir" "$tmp")
  tmp=$(mktemp "$dir/.tmp.XXXXXX")
  jq -n --arg mt "$OCI_MANIFEST_TYPE" --arg ct "$OCI_CONFIG_TYPE" \
    --arg cd "$cfg_digest" --argjson cs "$cfg_size" \
    --argjson layers "$layers" --argjson ann "$annotations" \
    '{schemaVersion: 2, mediaType: $mt,
      config: {mediaType: $ct, digest: $cd, size: $cs},
      layers: $layers, annotations: $ann}' | oci_json "$tmp"
  read -r man_digest man_size < <(oci_blob "$dir" "$tmp")
  jq -n --arg it "$OCI_INDEX_TYPE" --arg mt "$OCI_MANIFEST_TYPE" \
    --arg d "$man_digest" --argjson s "$man_size" --arg tag "$tag" \
    '{schemaVersion: 2, mediaType: $it,
      manifests: [{mediaType: $mt, digest: $d, size: $s,
                   annotations: {"org.opencontainers.image.ref.name": $tag}}]}' \
    | oci_json "$dir/index.json"
  echo "$man_digest"
}

# oci_version: the workspace's version (root Cargo.toml, [workspace.package]).
oci_version() {
  awk '/^\[workspace.package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/, "", $0); sub(/^version=/, "", $0); print; exit}' "$1/Cargo.toml"
}

# oci_revision ROOT: the commit the build starts from (git rev-parse HEAD), "unknown" outside
# a git checkout. Uncommitted changes are not marked: the revision names the base.
oci_revision() {
  git -C "$1" rev-parse HEAD 2>/dev/null || echo unknown
}

# oci_epoch ROOT: $SOURCE_DATE_EPOCH, else the HEAD commit's time, else 0.
oci_epoch() {
  if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then echo "$SOURCE_DATE_EPOCH"; return; fi
  git -C "$1" log -1 --format=%ct 2>/dev/null || echo 0
}
