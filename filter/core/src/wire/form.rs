//! The form of `POST /token` (distribution's docs/spec/auth/oauth.md, RFC 6749 §4.3 and
//! §6), decoded by the same strict decoder as the query string
//! ([`crate::wire::query::for_each_param`]).
//!
//! RFC 6749 §3.1–3.2: a parameter sent without a value is treated as omitted; unknown
//! parameters are ignored; a known parameter must not be given more than once — except
//! `scope`, which containers/image repeats (its values are joined as if space-separated).

use std::fmt;

use crate::wire::query::{for_each_param, QueryError};

/// Largest form body accepted, bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The media type a token request body must have (parameters such as `charset` allowed).
pub const FORM_MEDIA_TYPE: &str = "application/x-www-form-urlencoded";

/// The parameters of a `POST /token` form. Empty values count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenForm {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `service`.
    pub service: Option<String>,
    /// Every `scope` value, in order (each may hold several space-separated scopes).
    pub scopes: Vec<String>,
    /// `client_id` (required by distribution's spec; not enforced).
    pub client_id: Option<String>,
    /// `username` (password grant; informational).
    pub username: Option<String>,
    /// `password` (password grant): the OpToken.
    pub password: Option<String>,
    /// `refresh_token` (refresh grant).
    pub refresh_token: Option<String>,
    /// `access_type` (`offline` asks for a refresh token).
    pub access_type: Option<String>,
}

impl TokenForm {
    /// `access_type=offline`.
    pub fn offline(&self) -> bool {
        self.access_type.as_deref() == Some("offline")
    }
}

/// Why a form body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// Longer than [`MAX_FORM_BYTES`].
    TooLarge {
        /// The body length, bytes.
        len: usize,
    },
    /// The body is not UTF-8 text.
    NotUtf8,
    /// A parameter is badly encoded or repeated.
    Invalid(QueryError),
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::TooLarge { .. } => {
                write!(f, "the request body exceeds {MAX_FORM_BYTES} bytes")
            }
            FormError::NotUtf8 => f.write_str("the request body is not UTF-8 text"),
            FormError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FormError {}

/// Whether a `Content-Type` value is `application/x-www-form-urlencoded` (any parameters).
pub fn is_form_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(FORM_MEDIA_TYPE))
}

/// Decodes a token request body.
pub fn parse_form(body: &[u8]) -> Result<TokenForm, FormError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(FormError::TooLarge { len: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| FormError::NotUtf8)?;
    // A trailing line break (curl --data @file) is not part of the last value.
    let text = text.trim_end_matches(['\r', '\n']);
    let mut form = TokenForm::default();
    for_each_param(text, |name, value| {
        if value.is_empty() {
            return Ok(());
        }
        let (slot, param) = match name {
            "scope" => {
                form.scopes.push(value);
                return Ok(());
            }
            "grant_type" => (&mut form.grant_type, "grant_type"),
            "service" => (&mut form.service, "service"),
            "client_id" => (&mut form.client_id, "client_id"),
            "username" => (&mut form.username, "username"),
            "password" => (&mut form.password, "password"),
            "refresh_token" => (&mut form.refresh_token, "refresh_token"),
            "access_type" => (&mut form.access_type, "access_type"),
            _ => return Ok(()),
        };
        if slot.is_some() {
            return Err(QueryError::Repeated { param });
        }
        *slot = Some(value);
        Ok(())
    })
    .map_err(FormError::Invalid)?;
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> TokenForm {
        parse_form(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn containerd_password_grant() {
        let f = ok("client_id=containerd-client&grant_type=password&password=OPTOK&scope=repository:e2e/ctr:pull+repository:e2e/ctr:pull,push&service=S&username=alice");
        assert_eq!(f.grant_type.as_deref(), Some("password"));
        assert_eq!(f.password.as_deref(), Some("OPTOK"));
        assert_eq!(f.username.as_deref(), Some("alice"));
        assert_eq!(f.client_id.as_deref(), Some("containerd-client"));
        assert_eq!(f.service.as_deref(), Some("S"));
        assert_eq!(
            f.scopes,
            ["repository:e2e/ctr:pull repository:e2e/ctr:pull,push"]
        );
        assert!(!f.offline());
    }

    #[test]
    fn containers_image_refresh_grant_repeats_scope() {
        let f = ok("grant_type=refresh_token&refresh_token=rtr1.x.y&client_id=containers%2Fimage&scope=repository:a:pull&scope=repository:b:push&service=S&access_type=offline");
        assert_eq!(f.refresh_token.as_deref(), Some("rtr1.x.y"));
        assert_eq!(f.client_id.as_deref(), Some("containers/image"));
        assert_eq!(f.scopes, ["repository:a:pull", "repository:b:push"]);
        assert!(f.offline());
    }

    #[test]
    fn repeats_refused_empty_values_omitted_unknown_ignored() {
        for param in [
            "grant_type",
            "service",
            "client_id",
            "username",
            "password",
            "refresh_token",
            "access_type",
        ] {
            let raw = format!("{param}=a&{param}=a");
            assert_eq!(
                parse_form(raw.as_bytes()),
                Err(FormError::Invalid(QueryError::Repeated { param })),
                "{raw}"
            );
            assert!(parse_form(format!("{param}=&{param}=a").as_bytes()).is_ok());
        }
        assert_eq!(ok("grant_type=&service"), TokenForm::default());
        assert_eq!(ok("foo=bar&foo=baz&x"), TokenForm::default());
        assert_eq!(ok("service=S\r\n").service.as_deref(), Some("S"));
    }

    #[test]
    fn strict_decoding() {
        assert!(matches!(
            parse_form(b"password=%zz"),
            Err(FormError::Invalid(
                QueryError::InvalidPercentEncoding { .. }
            ))
        ));
        assert!(matches!(
            parse_form(b"service=%FF"),
            Err(FormError::Invalid(QueryError::NotUtf8 { .. }))
        ));
        assert_eq!(parse_form(b"service=\xff"), Err(FormError::NotUtf8));
        assert!(matches!(
            parse_form(b"unknown=%"),
            Err(FormError::Invalid(_))
        ));
    }

    #[test]
    fn size_bound() {
        let pad = |n: usize| format!("service=s&x={}", "a".repeat(n - 12));
        assert_eq!(ok(&pad(MAX_FORM_BYTES)).service.as_deref(), Some("s"));
        assert_eq!(
            parse_form(pad(MAX_FORM_BYTES + 1).as_bytes()),
            Err(FormError::TooLarge {
                len: MAX_FORM_BYTES + 1
            })
        );
    }

    #[test]
    fn media_type() {
        for ok in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "Application/X-WWW-Form-Urlencoded;charset=UTF-8",
        ] {
            assert!(is_form_media_type(ok), "{ok}");
        }
        for bad in ["application/json", "", "multipart/form-data; boundary=x"] {
            assert!(!is_form_media_type(bad), "{bad}");
        }
    }
}
