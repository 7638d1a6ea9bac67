//! The gateway's Envoy YAML derived from the shipped `envoy/quickstart.yaml`: ports and
//! the module templated, the `configuration:` block replaced (StringValue JSON or Struct
//! block YAML), extra clusters and environment keys added. A change in quickstart's shape
//! fails here with a message naming what is missing.

use serde_json::Value;

use super::keys::read;
use super::{quickstart_path, ConfigForm, GatewaySpec};

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    let n = text.matches(from).count();
    if n != 1 {
        panic!(
            "envoy/quickstart.yaml: expected exactly one {from:?}, found {n}; \
             update tests/e2e/src/gateway.rs to the new shape of the file"
        );
    }
    text.replacen(from, to, 1)
}

/// quickstart's `host_env_keys` list items.
pub(super) fn quickstart_host_env_keys(quickstart: &str) -> Vec<String> {
    let lines: Vec<&str> = quickstart.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim() == "host_env_keys:") else {
        return Vec::new();
    };
    let ind = indent_of(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|l| indent_of(l) >= ind && l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].trim().to_owned())
        .collect()
}

/// quickstart with only the ports and the wasm file templated.
fn template_quickstart(quickstart: &str) -> String {
    let text = replace_once(
        quickstart,
        "port_value: 8085",
        "port_value: {{LISTEN_PORT}}",
    );
    let text = replace_once(&text, "port_value: 9901", "port_value: {{ADMIN_PORT}}");
    replace_once(
        &text,
        "target/wasm32-wasip1/release/registry_token_filter.wasm",
        "{{WASM_PATH}}",
    )
}

/// `envoy/quickstart.yaml` exactly as shipped, configuration included, with only the
/// listener port, the admin port and the wasm file templated (`{{LISTEN_PORT}}`,
/// `{{ADMIN_PORT}}`, `{{WASM_PATH}}`). Its configuration needs
/// `REGISTRY_TOKEN_SIGNING__KEYPEM` and `REGISTRY_TOKEN_AUTHORITY__JWKS`, as `make run`
/// passes them; its realm is `http://localhost:8085/token`, its service
/// `registry.localhost`.
pub fn quickstart_yaml() -> String {
    template_quickstart(&read(&quickstart_path()))
}

/// The filter configuration shipped in `envoy/quickstart.yaml` (the JSON of its
/// `StringValue`), parsed.
///
/// # Panics
/// When the file has no `value: |` block under `configuration:` or it is not JSON.
pub fn quickstart_filter_config() -> Value {
    let text = read(&quickstart_path());
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "configuration:")
        .and_then(|c| {
            lines[c..]
                .iter()
                .position(|l| l.trim() == "value: |")
                .map(|v| c + v)
        })
        .unwrap_or_else(|| panic!("envoy/quickstart.yaml: no configuration value: | block"));
    let ind = indent_of(lines[start]);
    let json: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent_of(l) > ind)
        .copied()
        .collect();
    serde_json::from_str(&json.join("\n"))
        .unwrap_or_else(|e| panic!("envoy/quickstart.yaml: the configuration is not JSON: {e}"))
}

pub(super) fn derive_gateway_yaml(quickstart: &str, spec: &GatewaySpec) -> String {
    let text = template_quickstart(quickstart);
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 64);
    let mut i = 0;
    let mut seen_config = false;
    let mut seen_env = false;
    let mut seen_static = false;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if trimmed == "configuration:" {
            if seen_config {
                panic!("envoy/quickstart.yaml: more than one configuration: block");
            }
            seen_config = true;
            let ind = indent_of(line);
            let mut end = i + 1;
            while end < lines.len() && (lines[end].trim().is_empty() || indent_of(lines[end]) > ind)
            {
                end += 1;
            }
            // Keep blank lines that follow the block.
            while end > i + 1 && lines[end - 1].trim().is_empty() {
                end -= 1;
            }
            out.push(line.to_owned());
            out.extend(configuration_block(&spec.config, spec.form, ind + 2));
            i = end;
            continue;
        }
        if trimmed == "host_env_keys:" {
            seen_env = true;
            let ind = indent_of(line);
            out.push(line.to_owned());
            let mut j = i + 1;
            let mut listed = Vec::new();
            let mut item_prefix = format!("{}- ", " ".repeat(ind));
            while j < lines.len()
                && indent_of(lines[j]) >= ind
                && lines[j].trim_start().starts_with("- ")
            {
                item_prefix = format!("{}- ", " ".repeat(indent_of(lines[j])));
                listed.push(lines[j].trim_start()[2..].trim().to_owned());
                out.push(lines[j].to_owned());
                j += 1;
            }
            for k in &spec.host_env_keys {
                if !listed.contains(k) {
                    listed.push(k.clone());
                    out.push(format!("{item_prefix}{k}"));
                }
            }
            if !spec.key_values.is_empty() {
                out.push(format!("{}key_values:", " ".repeat(ind)));
                for (k, v) in &spec.key_values {
                    out.push(format!(
                        "{}{}: {}",
                        " ".repeat(ind + 2),
                        k,
                        Value::String(v.clone())
                    ));
                }
            }
            i = j;
            continue;
        }
        out.push(line.to_owned());
        let has_clusters = text.contains("\n  clusters:");
        let opens_clusters = if has_clusters {
            line == "  clusters:"
        } else {
            trimmed == "static_resources:" && indent_of(line) == 0
        };
        if trimmed == "static_resources:" && indent_of(line) == 0 {
            seen_static = true;
        }
        if opens_clusters && !spec.extra_clusters.trim().is_empty() {
            if !has_clusters {
                out.push("  clusters:".to_owned());
            }
            for l in spec.extra_clusters.lines() {
                if l.trim().is_empty() {
                    out.push(String::new());
                } else {
                    out.push(format!("  {l}"));
                }
            }
        }
        i += 1;
    }
    if !seen_config || !seen_env || !seen_static {
        panic!(
            "envoy/quickstart.yaml: expected a configuration: block ({seen_config}), \
             host_env_keys: ({seen_env}) and static_resources: ({seen_static}); update \
             tests/e2e/src/gateway.rs to the new shape of the file"
        );
    }
    let mut yaml = out.join("\n");
    yaml.push('\n');
    yaml
}

/// The lines under `configuration:` at indentation `ind`.
fn configuration_block(config: &Value, form: ConfigForm, ind: usize) -> Vec<String> {
    let pad = " ".repeat(ind);
    let mut out = Vec::new();
    match form {
        ConfigForm::StringValue => {
            out.push(format!(
                "{pad}\"@type\": type.googleapis.com/google.protobuf.StringValue"
            ));
            out.push(format!("{pad}value: |"));
            let pretty = serde_json::to_string_pretty(config)
                .unwrap_or_else(|e| panic!("configuration to JSON: {e}"));
            for l in pretty.lines() {
                out.push(format!("{pad}  {l}"));
            }
        }
        ConfigForm::Struct => {
            out.push(format!(
                "{pad}\"@type\": type.googleapis.com/google.protobuf.Struct"
            ));
            out.push(format!("{pad}value:"));
            let mut body = String::new();
            yaml_mapping(config, ind + 2, &mut body);
            out.extend(body.lines().map(str::to_owned));
        }
    }
    out
}

/// A scalar, or an array/object that can be written in flow style on one line (JSON is
/// valid YAML flow).
fn is_flow(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()),
        Value::Object(o) => o.is_empty(),
        _ => true,
    }
}

/// Writes `v` as native block YAML. Keys and strings are JSON-quoted, which YAML reads as
/// double-quoted scalars with the same escapes.
fn to_block_yaml(v: &Value, ind: usize, out: &mut String) {
    match v {
        Value::Object(_) => yaml_mapping(v, ind, out),
        Value::Array(items) => {
            for item in items {
                if is_flow(item) {
                    out.push_str(&format!("{}- {}\n", " ".repeat(ind), item));
                } else {
                    let mut inner = String::new();
                    to_block_yaml(item, ind + 2, &mut inner);
                    // The first line's indentation becomes "- ".
                    let first_pad = " ".repeat(ind + 2);
                    let inner = inner.strip_prefix(&first_pad).unwrap_or(&inner);
                    out.push_str(&format!("{}- {}", " ".repeat(ind), inner));
                }
            }
        }
        other => out.push_str(&format!("{}{}\n", " ".repeat(ind), other)),
    }
}

fn yaml_mapping(v: &Value, ind: usize, out: &mut String) {
    let Value::Object(map) = v else {
        to_block_yaml(v, ind, out);
        return;
    };
    for (k, val) in map {
        let key = Value::String(k.clone());
        if is_flow(val) {
            out.push_str(&format!("{}{}: {}\n", " ".repeat(ind), key, val));
        } else {
            out.push_str(&format!("{}{}:\n", " ".repeat(ind), key));
            to_block_yaml(val, ind + 2, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> GatewaySpec {
        GatewaySpec::new(&json!({
            "a": {"b": [1, "x"], "c": {}, "d": []},
            "plans": [{"name": "p", "repositories": [{"pattern": "s/*", "actions": ["pull"]}]}],
            "e": "quote \" and \n newline"
        }))
    }

    #[test]
    fn derivation_templates_ports_wasm_and_configuration() {
        let yaml = spec()
            .extra_clusters("- name: extra\n  type: STATIC\n")
            .host_env_key("REGISTRY_TOKEN_X")
            .key_value("REGISTRY_TOKEN_Y", "1 2")
            .yaml();
        for needle in [
            "port_value: {{LISTEN_PORT}}",
            "port_value: {{ADMIN_PORT}}",
            "filename: {{WASM_PATH}}",
            "  clusters:\n  - name: extra\n    type: STATIC\n",
            "- REGISTRY_TOKEN_SIGNING__KEYPEM\n",
            "- REGISTRY_TOKEN_X\n",
            "key_values:\n",
            "REGISTRY_TOKEN_Y: \"1 2\"\n",
            "google.protobuf.StringValue",
        ] {
            assert!(yaml.contains(needle), "{needle:?} not in\n{yaml}");
        }
        assert!(
            !yaml.contains("port_value: 8085") && !yaml.contains("port_value: 9901"),
            "{yaml}"
        );
        assert!(
            !yaml.contains("stella-ops/public/*"),
            "quickstart's config left:\n{yaml}"
        );
        assert!(yaml.contains("stats_config:"), "{yaml}");
    }

    #[test]
    fn struct_form_is_block_yaml() {
        let yaml = spec().form(ConfigForm::Struct).yaml();
        let start = yaml.find("google.protobuf.Struct").unwrap_or(0);
        let block: String = yaml[start..]
            .lines()
            .skip(1)
            .take(12)
            .collect::<Vec<_>>()
            .join("\n");
        let pad = " ".repeat(indent_of(block.lines().next().unwrap_or("")));
        let want = [
            "value:",
            "  \"a\":",
            "    \"b\": [1,\"x\"]",
            "    \"c\": {}",
            "    \"d\": []",
            "  \"e\": \"quote \\\" and \\n newline\"",
            "  \"plans\":",
            "    - \"name\": \"p\"",
            "      \"repositories\":",
            "        - \"actions\": [\"pull\"]",
            "          \"pattern\": \"s/*\"",
        ]
        .iter()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n");
        assert!(block.starts_with(&want), "got:\n{block}\nwant:\n{want}");
    }

    #[test]
    fn quickstart_configuration_parses() {
        let c = quickstart_filter_config();
        assert_eq!(c["defaultPlan"], "community");
        assert!(quickstart_yaml().contains("port_value: {{LISTEN_PORT}}"));
        let keys = quickstart_host_env_keys(&read(&quickstart_path()));
        assert!(
            keys.iter().any(|k| k == super::super::KEYPEM_ENV),
            "{keys:?}"
        );
    }
}
