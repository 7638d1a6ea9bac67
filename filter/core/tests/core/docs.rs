//! docs/CONFIGURATION.md lists every refusal from the one source, [`Reason::ALL`]: this test
//! fails when the table and the type disagree. `UPDATE_DOCS=1 cargo test -p
//! registry-token-core --test core docs::` rewrites the table.

use registry_token_core::handler::{AlertClass, Reason};

const BEGIN: &str =
    "<!-- reasons:begin (generated from handler::Reason by filter/core/tests/core/docs.rs) -->";
const END: &str = "<!-- reasons:end -->";

fn table() -> String {
    let mut out = String::from(
        "| reason label | status | OAuth error | `POST` reply | alert | meaning |\n|---|---|---|---|---|---|\n",
    );
    for r in Reason::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} `{}` | {} | {} |\n",
            r.label(),
            r.status(),
            r.oauth_error()
                .map_or("–".to_string(), |e| format!("`{e}`")),
            r.token_endpoint_error().0,
            r.token_endpoint_error().1,
            r.alert_class().label(),
            r.description()
        ));
    }
    out
}

#[test]
fn configuration_doc_lists_every_reason() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CONFIGURATION.md");
    let doc = std::fs::read_to_string(path).expect("docs/CONFIGURATION.md");
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/CONFIGURATION.md lacks the {BEGIN} … {END} markers");
    };
    let current = &doc[b + BEGIN.len()..e];
    let wanted = format!("\n{}", table());
    if current != wanted {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{}{}{}", &doc[..b], BEGIN, wanted, &doc[e..]);
            std::fs::write(path, updated).expect("write docs/CONFIGURATION.md");
        } else {
            panic!(
                "docs/CONFIGURATION.md's reason table is out of step with handler::Reason; \
                 run UPDATE_DOCS=1 cargo test -p registry-token-core --test core docs::\n{wanted}"
            );
        }
    }
}

/// The labels of `class`, joined with `|` in [`Reason::ALL`] order (a Prometheus regex).
fn class_regex(class: AlertClass) -> String {
    Reason::ALL
        .iter()
        .filter(|r| r.alert_class() == class)
        .map(|r| r.label())
        .collect::<Vec<_>>()
        .join("|")
}

/// The Prometheus rules follow [`Reason::alert_class`]: the alarm alert selects exactly the
/// alarm reasons, the warning alert leaves out exactly the noise and alarm reasons.
#[test]
fn prometheus_rules_follow_the_alert_classes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/registry-token.rules.yaml"
    );
    let rules = std::fs::read_to_string(path).expect("deploy/prometheus/registry-token.rules.yaml");
    let noise = class_regex(AlertClass::Noise);
    let alarm = class_regex(AlertClass::Alarm);
    assert!(noise.contains("missing_credentials"), "{noise}");
    assert!(alarm.contains("bad_signature"), "{alarm}");
    for wanted in [
        format!(r#"registry_token_rejected_total{{reason=~"{alarm}"}}"#),
        format!(r#"registry_token_rejected_total{{reason!~"{noise}|{alarm}"}}"#),
        format!(r#"registry_token_rejected_total{{reason=~"{noise}"}}"#),
    ] {
        assert!(
            rules.contains(&wanted),
            "deploy/prometheus/registry-token.rules.yaml lacks {wanted}"
        );
    }
}
