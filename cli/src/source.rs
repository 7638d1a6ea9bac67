//! `--config FILE`: the filter configuration, found where an operator keeps it.
//!
//! - an Envoy YAML (or JSON) bootstrap holding the Wasm HTTP filter: the plugin
//!   `configuration` of its `typed_config` (`type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm`),
//!   either a `google.protobuf.StringValue` (JSON text) or a `google.protobuf.Struct`;
//! - an Istio `WasmPlugin` (`spec.pluginConfig`);
//! - or the plugin configuration alone, JSON or YAML.
//!
//! The environment overrides apply exactly as in the filter: the core's [`Config::load`]
//! over the variables the filter would see. Inside an Envoy YAML that is what
//! `vm_config.environment_variables` passes (`host_env_keys` from this process's
//! environment, `key_values` as written; a key in both is refused, as Envoy does); for an
//! Istio `WasmPlugin`, `spec.vmConfig.env`; for a configuration alone, every
//! `REGISTRY_TOKEN_*` variable of this process.

use std::collections::BTreeMap;
use std::path::Path;

use registry_token_core::config::{Config, ENV_PREFIX};
use serde_json::Value;

/// The Wasm HTTP filter's `typed_config` type.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const STRUCT_TYPE: &str = "type.googleapis.com/google.protobuf.Struct";

/// A validated configuration and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Where in the file it was found (for messages).
    pub origin: String,
    /// `REGISTRY_TOKEN_*` variables of this process that the filter would not see (not
    /// listed in the YAML's `host_env_keys`), so they were not applied.
    pub ignored_env: Vec<String>,
    /// Warnings of the configuration ([`Config::warnings`]).
    pub warnings: Vec<String>,
}

/// One plugin configuration found in a file: its bytes as the filter receives them (JSON
/// text), the environment the filter would see, and a name for messages.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    json: String,
    /// `None`: every `REGISTRY_TOKEN_*` of the process (a configuration alone).
    env: Option<EnvSpec>,
}

#[derive(Debug, Clone, Default)]
struct EnvSpec {
    host_keys: Vec<String>,
    fixed: BTreeMap<String, String>,
}

/// Loads `path` with the process environment `env`. `filter` picks one of several Wasm
/// filters by `config.name` or `config.root_id`.
pub fn load(path: &Path, filter: Option<&str>, env: &[(String, String)]) -> Result<Loaded, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    load_text(&text, &path.display().to_string(), filter, env)
}

/// [`load`] of the file's text; `label` names it in messages.
pub fn load_text(
    text: &str,
    label: &str,
    filter: Option<&str>,
    env: &[(String, String)],
) -> Result<Loaded, String> {
    let root: Value = serde_yaml::from_str(text)
        .map_err(|e| format!("--config {label}: neither JSON nor YAML: {e}"))?;
    let found = find(&root, filter).map_err(|e| format!("--config {label}: {e}"))?;
    let prefixed: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .cloned()
        .collect();
    let (vars, ignored_env) = match &found.env {
        None => (prefixed, Vec::new()),
        Some(spec) => {
            let mut vars: Vec<(String, String)> = Vec::new();
            for key in &spec.host_keys {
                if spec.fixed.contains_key(key) {
                    return Err(format!(
                        "--config {label}: {}: environment variable {key} is both a host_env_key \
                         and a key_value (Envoy refuses this too)",
                        found.name
                    ));
                }
                if let Some((_, v)) = env.iter().find(|(k, _)| k == key) {
                    vars.push((key.clone(), v.clone()));
                }
            }
            vars.extend(spec.fixed.iter().map(|(k, v)| (k.clone(), v.clone())));
            let ignored = prefixed
                .iter()
                .filter(|(k, _)| !spec.host_keys.contains(k))
                .map(|(k, _)| k.clone())
                .collect();
            (vars, ignored)
        }
    };
    let config = Config::load(found.json.as_bytes(), vars)
        .map_err(|e| format!("--config {label} ({}): {e}", found.name))?;
    Ok(Loaded {
        warnings: config.warnings(),
        config,
        origin: format!("{label} ({})", found.name),
        ignored_env,
    })
}

fn find(root: &Value, filter: Option<&str>) -> Result<Found, String> {
    let Some(obj) = root.as_object() else {
        return Err(
            "expected a mapping (an Envoy configuration or the plugin configuration)".into(),
        );
    };
    // The plugin configuration alone: its own top-level sections.
    if obj.contains_key("authority") || obj.contains_key("signing") || obj.contains_key("registry")
    {
        if filter.is_some() {
            return Err("--filter only applies to an Envoy or Istio configuration".into());
        }
        return Ok(Found {
            name: "plugin configuration".into(),
            json: root.to_string(),
            env: None,
        });
    }
    let mut all = Vec::new();
    walk(root, "", &mut all);
    if all.is_empty() {
        return Err(format!(
            "holds no Wasm HTTP filter ({WASM_FILTER_TYPE}) and no Istio WasmPlugin, and is not \
             a plugin configuration (authority, signing, registry)"
        ));
    }
    let candidates: Vec<Result<Found, String>> = match filter {
        None => all,
        Some(want) => all
            .into_iter()
            .filter(|f| match f {
                Ok(found) => found.name.split(' ').any(|n| n == want),
                Err(_) => false,
            })
            .collect(),
    };
    match candidates.len() {
        0 => Err(format!(
            "no Wasm filter named {:?} (by config.name or config.root_id)",
            filter.unwrap_or_default()
        )),
        1 => candidates
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(String::new())),
        n => {
            let names: Vec<String> = candidates
                .iter()
                .map(|c| match c {
                    Ok(f) => f.name.clone(),
                    Err(e) => e.clone(),
                })
                .collect();
            Err(format!(
                "holds {n} Wasm filters ({}); choose one with --filter NAME",
                names.join("; ")
            ))
        }
    }
}

/// Every Wasm HTTP filter config (and Istio WasmPlugin) under `node`, depth first.
fn walk(node: &Value, at: &str, out: &mut Vec<Result<Found, String>>) {
    match node {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                out.push(envoy_filter(map.get("config"), at));
                return;
            }
            if map.get("kind").and_then(Value::as_str) == Some("WasmPlugin") {
                out.push(istio_plugin(map.get("spec"), at));
                return;
            }
            for (k, v) in map {
                walk(v, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn str_at<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v.and_then(|v| v.get(key)).and_then(Value::as_str)
}

fn envoy_filter(config: Option<&Value>, at: &str) -> Result<Found, String> {
    let mut names = Vec::new();
    for key in ["name", "root_id", "rootId"] {
        if let Some(n) = str_at(config, key) {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
    }
    let name = if names.is_empty() {
        format!("Wasm filter at {}", at.trim_start_matches('.'))
    } else {
        names.join(" ")
    };
    let Some(configuration) = config.and_then(|c| c.get("configuration")) else {
        return Err(format!(
            "{name}: the Wasm filter has no config.configuration"
        ));
    };
    let json =
        any_value(configuration).map_err(|e| format!("{name}: config.configuration: {e}"))?;
    let vm = config.and_then(|c| c.get("vm_config").or_else(|| c.get("vmConfig")));
    let vars = vm.and_then(|v| {
        v.get("environment_variables")
            .or_else(|| v.get("environmentVariables"))
    });
    let mut spec = EnvSpec::default();
    if let Some(vars) = vars {
        let keys = vars
            .get("host_env_keys")
            .or_else(|| vars.get("hostEnvKeys"));
        for k in keys.and_then(Value::as_array).into_iter().flatten() {
            let k = k
                .as_str()
                .ok_or_else(|| format!("{name}: host_env_keys holds a non-string"))?;
            spec.host_keys.push(k.to_string());
        }
        let fixed = vars.get("key_values").or_else(|| vars.get("keyValues"));
        for (k, v) in fixed.and_then(Value::as_object).into_iter().flatten() {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => return Err(format!("{name}: key_values.{k} is not a string")),
            };
            spec.fixed.insert(k.clone(), v);
        }
    }
    Ok(Found {
        name,
        json,
        env: Some(spec),
    })
}

/// A `google.protobuf.Any` holding the plugin configuration: the JSON text it stands for.
fn any_value(configuration: &Value) -> Result<String, String> {
    let ty = configuration
        .get("@type")
        .and_then(Value::as_str)
        .ok_or("has no @type (google.protobuf.StringValue or google.protobuf.Struct)")?;
    let value = configuration.get("value");
    match ty {
        STRING_VALUE_TYPE => match value {
            Some(Value::String(s)) => Ok(s.clone()),
            None => Err("a StringValue without value".into()),
            Some(_) => Err("a StringValue whose value is not a string".into()),
        },
        STRUCT_TYPE => match value {
            Some(v @ Value::Object(_)) => Ok(v.to_string()),
            _ => Err("a Struct whose value is not a mapping".into()),
        },
        other => Err(format!(
            "@type {other:?} is neither google.protobuf.StringValue nor google.protobuf.Struct"
        )),
    }
}

fn istio_plugin(spec: Option<&Value>, at: &str) -> Result<Found, String> {
    let name = str_at(spec, "pluginName")
        .map(str::to_string)
        .unwrap_or_else(|| format!("WasmPlugin at {}", at.trim_start_matches('.')));
    let Some(plugin) = spec.and_then(|s| s.get("pluginConfig")) else {
        return Err(format!("{name}: the WasmPlugin has no spec.pluginConfig"));
    };
    if !plugin.is_object() {
        return Err(format!("{name}: spec.pluginConfig is not a mapping"));
    }
    let mut env = EnvSpec::default();
    let entries = spec
        .and_then(|s| s.get("vmConfig"))
        .and_then(|v| v.get("env"))
        .and_then(Value::as_array);
    for (i, e) in entries.into_iter().flatten().enumerate() {
        let key = str_at(Some(e), "name")
            .ok_or_else(|| format!("{name}: spec.vmConfig.env[{i}] has no name"))?;
        match (str_at(Some(e), "valueFrom"), str_at(Some(e), "value")) {
            (Some("HOST"), _) => env.host_keys.push(key.to_string()),
            (_, Some(v)) => {
                env.fixed.insert(key.to_string(), v.to_string());
            }
            _ => {
                env.fixed.insert(key.to_string(), String::new());
            }
        }
    }
    Ok(Found {
        name,
        json: plugin.to_string(),
        env: Some(env),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn plugin() -> Value {
        serde_json::json!({
            "authority": {"issuer": "https://a.example", "audiences": ["x"],
                           "jwks": {"keys": []}},
            "signing": {},
            "registry": {"realm": "http://localhost/token", "allowedServices": ["r"]}
        })
    }

    #[test]
    fn finds_a_string_value_and_its_environment() {
        let json = plugin().to_string();
        let yaml = format!(
            "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n      - typed_config:\n          http_filters:\n          - name: registry_token\n            typed_config:\n              \"@type\": {WASM_FILTER_TYPE}\n              config:\n                name: rt\n                root_id: registry_token\n                vm_config:\n                  environment_variables:\n                    host_env_keys: [REGISTRY_TOKEN_SIGNING__KEYPEM]\n                    key_values: {{ REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS: \"120\" }}\n                configuration:\n                  \"@type\": {STRING_VALUE_TYPE}\n                  value: {}\n",
            serde_json::Value::String(json.clone())
        );
        let root: Value = serde_yaml::from_str(&yaml).unwrap();
        let found = find(&root, None).unwrap();
        assert_eq!(found.json, json);
        assert_eq!(found.name, "rt registry_token");
        let env = found.env.unwrap();
        assert_eq!(env.host_keys, vec!["REGISTRY_TOKEN_SIGNING__KEYPEM"]);
        assert_eq!(
            env.fixed
                .get("REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS")
                .map(String::as_str),
            Some("120")
        );
        assert!(find(&root, Some("registry_token")).is_ok());
        assert!(find(&root, Some("other")).unwrap_err().contains("other"));
    }

    #[test]
    fn finds_a_struct_and_refuses_other_types() {
        let root = serde_json::json!({"filters": [{"typed_config": {
            "@type": WASM_FILTER_TYPE,
            "config": {"configuration": {"@type": STRUCT_TYPE, "value": plugin()}}}}]});
        let found = find(&root, None).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&found.json).unwrap(),
            plugin()
        );
        let root = serde_json::json!({"typed_config": {
            "@type": WASM_FILTER_TYPE,
            "config": {"configuration": {"@type": "type.googleapis.com/google.protobuf.BytesValue", "value": "x"}}}});
        let e = find(&root, None).unwrap_err();
        assert!(
            e.contains("config.configuration") && e.contains("BytesValue"),
            "{e}"
        );
        let root = serde_json::json!({"typed_config": {"@type": WASM_FILTER_TYPE, "config": {}}});
        assert!(find(&root, None)
            .unwrap_err()
            .contains("no config.configuration"));
    }

    #[test]
    fn several_filters_need_a_choice_and_none_is_an_error() {
        let one = |n: &str| {
            serde_json::json!({"@type": WASM_FILTER_TYPE, "config": {"name": n,
                "configuration": {"@type": STRUCT_TYPE, "value": plugin()}}})
        };
        let root = serde_json::json!({"a": [one("first"), one("second")]});
        let e = find(&root, None).unwrap_err();
        assert!(
            e.contains("--filter") && e.contains("first") && e.contains("second"),
            "{e}"
        );
        assert_eq!(find(&root, Some("second")).unwrap().name, "second");
        let e = find(&serde_json::json!({"static_resources": {}}), None).unwrap_err();
        assert!(e.contains("no Wasm HTTP filter"), "{e}");
        let e = find(&serde_json::json!([1]), None).unwrap_err();
        assert!(e.contains("mapping"), "{e}");
    }

    #[test]
    fn plugin_alone_takes_every_prefixed_variable() {
        let found = find(&plugin(), None).unwrap();
        assert!(found.env.is_none());
        assert!(find(&plugin(), Some("x")).is_err());
    }

    #[test]
    fn istio_wasm_plugin() {
        let root = serde_json::json!({"apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin", "metadata": {"name": "registry-token"},
            "spec": {"pluginName": "registry_token", "pluginConfig": plugin(),
                     "vmConfig": {"env": [{"name": "REGISTRY_TOKEN_SIGNING__KEYPEM", "valueFrom": "HOST"},
                                          {"name": "REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS", "value": "90"}]}}});
        let found = find(&root, None).unwrap();
        assert_eq!(found.name, "registry_token");
        let env = found.env.unwrap();
        assert_eq!(env.host_keys, vec!["REGISTRY_TOKEN_SIGNING__KEYPEM"]);
        assert_eq!(env.fixed.len(), 1);
    }

    #[test]
    fn duplicate_environment_key_is_refused() {
        let root = serde_json::json!({"typed_config": {"@type": WASM_FILTER_TYPE, "config": {
            "vm_config": {"environment_variables": {
                "host_env_keys": ["REGISTRY_TOKEN_SIGNING__KEYPEM"],
                "key_values": {"REGISTRY_TOKEN_SIGNING__KEYPEM": "x"}}},
            "configuration": {"@type": STRUCT_TYPE, "value": plugin()}}}});
        let e = load_text(&root.to_string(), "f", None, &[]).unwrap_err();
        assert!(e.contains("both a host_env_key and a key_value"), "{e}");
    }
}
