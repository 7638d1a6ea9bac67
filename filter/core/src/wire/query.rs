//! The query string of `GET /token` (Docker token protocol), and the one
//! `application/x-www-form-urlencoded` decoder ([`for_each_param`]) that the `POST /token`
//! form ([`crate::wire::form`]) shares.
//!
//! [`parse_query`] decodes `application/x-www-form-urlencoded` text strictly (bad percent
//! sequences and non-UTF-8 are errors), keeps the parameters the token endpoint knows and
//! ignores the others. Scope values are returned raw; [`crate::policy::scope::parse_scopes`] parses
//! them.

use std::fmt;

use crate::wire::echo;

/// Longest query string accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 8192;

/// The parameters of a token request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenQuery {
    /// `service`: the registry the token is for. An empty value counts as missing.
    pub service: Option<String>,
    /// Every `scope` value, decoded, in order. A value may hold several space-separated
    /// scopes and may be blank; [`crate::policy::scope::parse_scopes`] handles both.
    pub scopes: Vec<String>,
    /// `account`: the user name the client claims. An empty value counts as missing.
    pub account: Option<String>,
    /// `client_id`: free-form client identification. An empty value counts as missing.
    pub client_id: Option<String>,
    /// `offline_token`: true when any value is `true` or `1` (ASCII case-insensitive).
    pub offline_token: bool,
}

/// Why a query string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Longer than [`MAX_QUERY_BYTES`].
    TooLong {
        /// Length of the refused query, in bytes.
        len: usize,
    },
    /// A `%` not followed by two hex digits in a parameter name.
    InvalidNameEncoding,
    /// A parameter name that is not UTF-8 once decoded.
    NameNotUtf8,
    /// A `%` not followed by two hex digits in the value of `param`.
    InvalidPercentEncoding {
        /// The parameter name, safe to echo.
        param: String,
    },
    /// The value of `param` is not UTF-8 once decoded.
    NotUtf8 {
        /// The parameter name, safe to echo.
        param: String,
    },
    /// `service`, `account` or `client_id` given twice with different non-empty values.
    Conflicting {
        /// The parameter name.
        param: &'static str,
    },
    /// A form parameter that must appear at most once was repeated (RFC 6749 §3.2).
    Repeated {
        /// The parameter name.
        param: &'static str,
    },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::TooLong { .. } => {
                write!(f, "query string exceeds {MAX_QUERY_BYTES} bytes")
            }
            QueryError::InvalidNameEncoding => {
                f.write_str("invalid percent-encoding in a parameter name")
            }
            QueryError::NameNotUtf8 => f.write_str("a parameter name is not valid UTF-8"),
            QueryError::InvalidPercentEncoding { param } => {
                write!(f, "invalid percent-encoding in parameter '{param}'")
            }
            QueryError::NotUtf8 { param } => {
                write!(f, "parameter '{param}' is not valid UTF-8")
            }
            QueryError::Conflicting { param } => {
                write!(
                    f,
                    "parameter '{param}' given more than once with different values"
                )
            }
            QueryError::Repeated { param } => {
                write!(f, "parameter '{param}' must not be given more than once")
            }
        }
    }
}

impl std::error::Error for QueryError {}

/// Parses the query string of a token request: `raw` is the text after `?` (may be empty).
pub fn parse_query(raw: &str) -> Result<TokenQuery, QueryError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLong { len: raw.len() });
    }
    let mut query = TokenQuery::default();
    for_each_param(raw, |name, value| {
        match name {
            "service" => set_once(&mut query.service, value, "service")?,
            "account" => set_once(&mut query.account, value, "account")?,
            "client_id" => set_once(&mut query.client_id, value, "client_id")?,
            "scope" => query.scopes.push(value),
            "offline_token" => {
                query.offline_token |= value.eq_ignore_ascii_case("true") || value.as_str() == "1";
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(query)
}

/// The one `application/x-www-form-urlencoded` decoder (query strings and `POST` bodies):
/// splits on `&`, skips empty pairs, decodes each name and value strictly, and hands them
/// to `f` in order. Length limits are the caller's.
pub fn for_each_param(
    raw: &str,
    mut f: impl FnMut(&str, String) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = match form_decode(raw_name) {
            Ok(name) => name,
            Err(DecodeError::Percent) => return Err(QueryError::InvalidNameEncoding),
            Err(DecodeError::Utf8) => return Err(QueryError::NameNotUtf8),
        };
        let value = form_decode(raw_value).map_err(|e| {
            let param = echo(&name).replace('\'', "?");
            match e {
                DecodeError::Percent => QueryError::InvalidPercentEncoding { param },
                DecodeError::Utf8 => QueryError::NotUtf8 { param },
            }
        })?;
        f(&name, value)?;
    }
    Ok(())
}

/// Stores a single-valued parameter: empty values are ignored, a repeat with the same value
/// is accepted, a different one is an error.
fn set_once(
    slot: &mut Option<String>,
    value: String,
    param: &'static str,
) -> Result<(), QueryError> {
    if value.is_empty() {
        return Ok(());
    }
    match slot {
        Some(existing) if *existing != value => Err(QueryError::Conflicting { param }),
        Some(_) => Ok(()),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

enum DecodeError {
    Percent,
    Utf8,
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space,
/// `%XX` a byte; the result must be UTF-8.
fn form_decode(input: &str) -> Result<String, DecodeError> {
    if !input.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(input.to_owned());
    }
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(DecodeError::Percent),
                }
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::Utf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> TokenQuery {
        parse_query(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn err(raw: &str) -> QueryError {
        match parse_query(raw) {
            Ok(q) => panic!("{raw} parsed as {q:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_query() {
        assert_eq!(ok(""), TokenQuery::default());
    }

    #[test]
    fn docker_pull_request() {
        let q = ok("account=alice&client_id=docker&offline_token=true&scope=repository%3Alibrary%2Falpine%3Apull&service=registry.example.com");
        assert_eq!(q.service.as_deref(), Some("registry.example.com"));
        assert_eq!(q.account.as_deref(), Some("alice"));
        assert_eq!(q.client_id.as_deref(), Some("docker"));
        assert!(q.offline_token);
        assert_eq!(q.scopes, ["repository:library/alpine:pull"]);
    }

    #[test]
    fn docker_login_has_no_scope() {
        let q = ok("account=alice&client_id=docker&offline_token=true&service=reg");
        assert!(q.scopes.is_empty());
    }

    #[test]
    fn unencoded_colons_and_slashes() {
        assert_eq!(
            ok("scope=repository:a/b:pull,push").scopes,
            ["repository:a/b:pull,push"]
        );
    }

    #[test]
    fn repeated_scopes_in_order() {
        assert_eq!(
            ok("scope=repository:a:pull&service=s&scope=repository:b:push&scope=").scopes,
            ["repository:a:pull", "repository:b:push", ""]
        );
    }

    #[test]
    fn plus_is_space() {
        assert_eq!(
            ok("scope=repository:a:pull+repository:b:pull").scopes,
            ["repository:a:pull repository:b:pull"]
        );
    }

    #[test]
    fn encoded_plus_is_plus() {
        assert_eq!(ok("account=a%2Bb").account.as_deref(), Some("a+b"));
    }

    #[test]
    fn percent_decoding_both_cases() {
        assert_eq!(
            ok("account=%61%6c%49%43%65").account.as_deref(),
            Some("alICe")
        );
        assert_eq!(ok("account=%2f%2F").account.as_deref(), Some("//"));
    }

    #[test]
    fn multibyte_utf8() {
        assert_eq!(ok("account=%C3%A9t%C3%A9").account.as_deref(), Some("été"));
        assert_eq!(ok("account=été").account.as_deref(), Some("été"));
    }

    #[test]
    fn invalid_percent_sequences() {
        for raw in [
            "scope=%",
            "scope=%2",
            "scope=%ZZ",
            "scope=%g0",
            "scope=a%0",
            "scope=%%41",
            "scope=%+1",
        ] {
            assert_eq!(
                err(raw),
                QueryError::InvalidPercentEncoding {
                    param: "scope".to_owned()
                },
                "{raw}"
            );
        }
    }

    #[test]
    fn invalid_percent_message() {
        assert_eq!(
            err("service=x&scope=%zz").to_string(),
            "invalid percent-encoding in parameter 'scope'"
        );
    }

    #[test]
    fn non_utf8_refused() {
        assert_eq!(
            err("service=%FF"),
            QueryError::NotUtf8 {
                param: "service".to_owned()
            }
        );
        assert_eq!(
            err("service=%C3").to_string(),
            "parameter 'service' is not valid UTF-8"
        );
        // Overlong encoding of '/'.
        assert!(matches!(err("scope=%C0%AF"), QueryError::NotUtf8 { .. }));
    }

    #[test]
    fn unknown_parameters_ignored_but_still_well_formed() {
        assert_eq!(ok("foo=bar&x&y=&=z"), TokenQuery::default());
        assert!(matches!(
            err("foo=%zz"),
            QueryError::InvalidPercentEncoding { .. }
        ));
    }

    #[test]
    fn encoded_parameter_names() {
        assert_eq!(
            ok("sc%6Fpe=repository:a:pull&servic%65=s").scopes,
            ["repository:a:pull"]
        );
        assert_eq!(ok("client%5Fid=c").client_id.as_deref(), Some("c"));
    }

    #[test]
    fn invalid_parameter_names() {
        assert_eq!(err("sc%pe=x"), QueryError::InvalidNameEncoding);
        assert_eq!(err("%FF=x"), QueryError::NameNotUtf8);
        assert_eq!(
            QueryError::InvalidNameEncoding.to_string(),
            "invalid percent-encoding in a parameter name"
        );
    }

    #[test]
    fn parameter_name_echo_is_sanitised() {
        let e = err("a%01'b=%zz");
        assert_eq!(
            e,
            QueryError::InvalidPercentEncoding {
                param: "a??b".to_owned()
            }
        );
        let long = format!("{}=%zz", "n".repeat(200));
        assert!(err(&long).to_string().len() < 120);
    }

    #[test]
    fn length_limit() {
        let pad = |n: usize| format!("service=s&x={}", "a".repeat(n - 12));
        let exact = pad(MAX_QUERY_BYTES);
        assert_eq!(exact.len(), MAX_QUERY_BYTES);
        assert_eq!(ok(&exact).service.as_deref(), Some("s"));
        let over = pad(MAX_QUERY_BYTES + 1);
        assert_eq!(
            err(&over),
            QueryError::TooLong {
                len: MAX_QUERY_BYTES + 1
            }
        );
        assert_eq!(err(&over).to_string(), "query string exceeds 8192 bytes");
    }

    #[test]
    fn length_limit_counts_encoded_bytes() {
        // 2731 "%41" = 8193 bytes even though they decode to 2731 bytes.
        let raw = format!("x={}", "%41".repeat(2730));
        assert_eq!(raw.len(), 8192);
        assert!(parse_query(&raw).is_ok());
        assert!(parse_query(&format!("{raw}a")).is_err());
    }

    #[test]
    fn repeated_service_same_value_ok() {
        assert_eq!(ok("service=s&service=s").service.as_deref(), Some("s"));
        assert_eq!(ok("service=s&service=%73").service.as_deref(), Some("s"));
    }

    #[test]
    fn repeated_service_different_values_refused() {
        assert_eq!(
            err("service=a&service=b"),
            QueryError::Conflicting { param: "service" }
        );
        assert_eq!(
            err("service=a&service=b").to_string(),
            "parameter 'service' given more than once with different values"
        );
    }

    #[test]
    fn empty_service_counts_as_missing() {
        assert_eq!(ok("service=").service, None);
        assert_eq!(ok("service").service, None);
        assert_eq!(ok("service=&service=x").service.as_deref(), Some("x"));
        assert_eq!(ok("service=x&service=").service.as_deref(), Some("x"));
    }

    #[test]
    fn account_and_client_id_conflicts() {
        assert_eq!(
            err("account=a&account=b"),
            QueryError::Conflicting { param: "account" }
        );
        assert_eq!(
            err("client_id=a&client_id=b"),
            QueryError::Conflicting { param: "client_id" }
        );
        assert_eq!(ok("account=&client_id=").account, None);
    }

    #[test]
    fn offline_token_values() {
        for (raw, expected) in [
            ("offline_token=true", true),
            ("offline_token=TRUE", true),
            ("offline_token=1", true),
            ("offline_token=false", false),
            ("offline_token=yes", false),
            ("offline_token=", false),
            ("offline_token", false),
            ("", false),
            ("offline_token=true&offline_token=false", true),
        ] {
            assert_eq!(ok(raw).offline_token, expected, "{raw}");
        }
    }

    #[test]
    fn empty_pairs_skipped() {
        assert_eq!(ok("&&service=s&&").service.as_deref(), Some("s"));
    }

    #[test]
    fn value_may_hold_equals() {
        assert_eq!(ok("account=a=b").account.as_deref(), Some("a=b"));
    }

    #[test]
    fn semicolon_is_not_a_separator() {
        assert_eq!(
            ok("service=a;scope=x").service.as_deref(),
            Some("a;scope=x")
        );
    }
}
