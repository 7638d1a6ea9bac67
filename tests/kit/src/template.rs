//! `{{NAME}}` templates (Envoy configurations): fill them in, refuse leftovers.

/// Replaces every `{{NAME}}` from `vars`; errors on any placeholder left over.
pub fn render_template<N: AsRef<str>, V: AsRef<str>>(
    template: &str,
    vars: &[(N, V)],
) -> Result<String, String> {
    let mut out = template.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{}}}}}", name.as_ref()), value.as_ref());
    }
    let left = placeholders(&out);
    if left.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "unresolved placeholder(s) in the Envoy config: {}",
            left.iter()
                .map(|n| format!("{{{{{n}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Names of the `{{NAME}}` placeholders (NAME = `[A-Za-z0-9_]+`) in `text`, in order.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_placeholders() {
        let vars = [("A", "1"), ("B_2", "two")];
        assert_eq!(
            render_template("x {{A}} {{B_2}} {{A}}", &vars),
            Ok("x 1 two 1".to_owned())
        );
        let err = render_template("{{A}} {{MISSING}}", &vars).unwrap_err();
        assert!(err.contains("{{MISSING}}"), "{err}");
        // Not placeholders: braces around other text.
        assert!(render_template("{{ a b }} {{}} {{", &vars).is_ok());
        assert_eq!(placeholders("{{X}}{{Y}}{{X}}"), ["X", "Y"]);
    }
}
