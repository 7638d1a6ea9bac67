//! Untrusted text made safe to quote in an error or log message: every refusal that names
//! what the client sent (a scope, a parameter name, a plan pattern) goes through [`echo`].

/// Longest piece of untrusted input echoed back in an error message, in characters.
const ECHO_MAX_CHARS: usize = 64;

/// Makes untrusted text safe to place between double quotes in an error or log message:
/// at most 64 characters (then `...`), anything but printable ASCII becomes `?`, and `"`
/// and `\` are backslash-escaped.
pub(crate) fn echo(input: &str) -> String {
    let mut out = String::new();
    for (count, c) in input.chars().enumerate() {
        if count == ECHO_MAX_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_masks_and_escapes() {
        assert_eq!(echo("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(echo("é\u{202e}\n"), "???");
        assert_eq!(echo(&"x".repeat(64)), "x".repeat(64));
        assert_eq!(echo(&"x".repeat(65)), format!("{}...", "x".repeat(64)));
        assert_eq!(echo(""), "");
    }
}
