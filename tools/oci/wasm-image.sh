#!/usr/bin/env bash
# tools/oci/wasm-image.sh: the filter module as a reproducible "compat" Wasm image in an
# OCI image layout, the shape istio-agent pulls for a WasmPlugin's oci:// URL (one
# application/vnd.oci.image.layer.v1.tar+gzip layer holding plugin.wasm), plus the bare
# module and its sha256 for https:// URLs.
#
#   tools/oci/wasm-image.sh WASM OUT [TAG]
#
# OUT/registry-token-filter/     the OCI layout (index.json names TAG, default the version)
# OUT/registry_token_filter.wasm the module, and .wasm.sha256 ("<hex>  <name>", sha256sum -c)
# OUT/registry-token-filter.digest  the manifest digest: a WasmPlugin's sha256 for oci://
#
# Prints the manifest digest on its last line. Annotations: org.opencontainers.image.version
# (the workspace version), .revision (git HEAD), .created (the HEAD commit's time, or
# $SOURCE_DATE_EPOCH), .title, .description. VERSION and REVISION in the environment override.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -ge 2 ] || { echo "usage: $0 WASM OUT [TAG]" >&2; exit 2; }
wasm=$1 out=$2
[ -f "$wasm" ] || { echo "$0: $wasm not found (make wasm)" >&2; exit 2; }
version=${VERSION:-$(oci_version "$root")}
revision=${REVISION:-$(oci_revision "$root")}
tag=${3:-$version}
epoch=$(oci_epoch "$root")
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

mkdir -p "$out"
layout="$out/registry-token-filter"
oci_init "$layout"

# The bare module for https:// (the WasmPlugin's sha256 is then this file's hash).
install -m 0644 "$wasm" "$out/registry_token_filter.wasm"
(cd "$out" && sha256sum registry_token_filter.wasm > registry_token_filter.wasm.sha256)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0444 "$wasm" "$stage/plugin.wasm"
oci_tar "$stage" "$stage/layer.tar" "$epoch" 0:0 plugin.wasm
read -r diff_id layer_digest layer_size < <(oci_layer "$layout" "$stage/layer.tar")

config=$(jq -n --arg diff "$diff_id" --arg created "$created" \
  '{architecture: "wasm", os: "wasip1", created: $created, config: {},
    rootfs: {type: "layers", diff_ids: [$diff]}}')
layers=$(jq -n --arg lt "$OCI_LAYER_TYPE" --arg d "$layer_digest" --argjson s "$layer_size" \
  '[{mediaType: $lt, digest: $d, size: $s,
     annotations: {"org.opencontainers.image.title": "plugin.wasm"}}]')
annotations=$(jq -n --arg v "$version" --arg r "$revision" --arg c "$created" \
  '{"org.opencontainers.image.version": $v, "org.opencontainers.image.revision": $r,
    "org.opencontainers.image.created": $c,
    "org.opencontainers.image.title": "registry-token-filter",
    "org.opencontainers.image.description": "registry-token-filter proxy-wasm module (plugin.wasm), Istio compat image"}')
digest=$(oci_finish "$layout" "$tag" "$config" "$layers" "$annotations")
printf '%s\n' "$digest" > "$out/registry-token-filter.digest"
echo "module:   $out/registry_token_filter.wasm ($(cut -d' ' -f1 "$out/registry_token_filter.wasm.sha256"), for https://)"
echo "layout:   oci:$layout:$tag (version $version, revision $revision)"
echo "$digest"
