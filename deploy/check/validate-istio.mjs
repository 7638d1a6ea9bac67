// make deploy-check: validates the Istio kinds in rendered manifests (the output of
// `kubectl kustomize deploy/...`) against @kubernetes-models/istio's schemas, which
// kubernetes-validate (core kinds only) does not know: WasmPlugin, EnvoyFilter, Gateway and
// VirtualService.
//
//   node deploy/check/validate-istio.mjs RENDERED.yaml...
//
// Every document of an Istio API group must be a kind we validate; documents of other
// groups are left to kubernetes-validate. Exits 1 naming the document and the error.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { EnvoyFilter } from "@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter";
import { Gateway } from "@kubernetes-models/istio/networking.istio.io/v1/Gateway";
import { VirtualService } from "@kubernetes-models/istio/networking.istio.io/v1/VirtualService";

const models = {
  "extensions.istio.io/v1alpha1/WasmPlugin": WasmPlugin,
  "networking.istio.io/v1alpha3/EnvoyFilter": EnvoyFilter,
  "networking.istio.io/v1/Gateway": Gateway,
  "networking.istio.io/v1/VirtualService": VirtualService,
};

let checked = 0;
let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) {
      console.error(`${file}: not YAML: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const obj = doc.toJS();
    if (!obj) continue;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const name = `${file}: ${key} ${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? "?"}`;
    const Model = models[key];
    if (!Model) {
      if (String(obj.apiVersion).includes("istio.io/")) {
        console.error(`${name}: an Istio kind this check has no schema for`);
        failed++;
      }
      continue;
    }
    try {
      new Model(obj).validate();
      checked++;
    } catch (e) {
      console.error(`${name}: ${e.message}`);
      failed++;
    }
  }
}
console.log(`istio kinds: ${checked} valid, ${failed} invalid`);
process.exit(failed > 0 || checked === 0 ? 1 : 0);
