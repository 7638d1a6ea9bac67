//! `GET /v1/issuances` (search, newest first, cursor pages, JSON or CSV) and
//! `GET /v1/issuances/{id}`, for the security team (admin token).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use registry_token_ledger_wire::{Decision, MAX_TEXT_BYTES};
use serde_json::json;

use super::extract::Params;
use super::{bad_param, no_store_json, ApiError, Shared, DEFAULT_LIMIT, MAX_LIMIT};
use crate::auth::Admin;
use crate::db::IssuanceFilter;
use crate::model::{Cell, Issuance, ISSUANCE_COLUMNS};

/// Encodes the position after a row: base64url of `time:id`.
pub fn encode_cursor(time: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{time}:{id}"))
}

/// Decodes [`encode_cursor`]'s output.
pub fn decode_cursor(cursor: &str) -> Result<(i64, String), String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| "cursor is not base64url".to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "cursor is not UTF-8".to_string())?;
    let (time, id) = text.split_once(':').ok_or("cursor is malformed")?;
    let time: i64 = time
        .parse()
        .map_err(|_| "cursor is malformed".to_string())?;
    if time < 0 || id.is_empty() {
        return Err("cursor is malformed".into());
    }
    Ok((time, id.to_string()))
}

fn rfc3339(name: &str, value: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            bad_param(
                name,
                format!("{name} must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z"),
            )
        })
}

fn parse_filter(params: Vec<(String, String)>) -> Result<IssuanceFilter, ApiError> {
    let mut f = IssuanceFilter {
        limit: DEFAULT_LIMIT,
        ..IssuanceFilter::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in params {
        if seen.contains(&name) {
            return Err(bad_param(&name, format!("{name} is given twice")));
        }
        seen.push(name.clone());
        let text = |v: String| -> Result<Option<String>, ApiError> {
            if v.is_empty() || v.len() > MAX_TEXT_BYTES {
                return Err(bad_param(
                    &name,
                    format!("{name} must be 1..={MAX_TEXT_BYTES} bytes"),
                ));
            }
            Ok(Some(v))
        };
        match name.as_str() {
            "subject" => f.subject = text(value)?,
            "license" => f.license = text(value)?,
            "service" => f.service = text(value)?,
            "issuer" => f.issuer = text(value)?,
            "policy" => f.policy = text(value)?,
            "repository" => {
                if value.contains([':', '"', '\\']) || value.chars().any(char::is_control) {
                    return Err(bad_param(&name, "repository must be a repository name"));
                }
                f.repository = text(value)?;
            }
            "decision" => {
                let Some(d) = Decision::from_word(&value) else {
                    return Err(bad_param(&name, "decision must be issued or rejected"));
                };
                f.decision = Some(d);
            }
            "since" => f.since = Some(rfc3339(&name, &value)?),
            "until" => f.until = Some(rfc3339(&name, &value)?),
            "limit" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| bad_param(&name, "limit must be an integer"))?;
                if !(1..=MAX_LIMIT).contains(&n) {
                    return Err(bad_param(
                        &name,
                        format!("limit must be within 1..={MAX_LIMIT}"),
                    ));
                }
                f.limit = n;
            }
            "cursor" => {
                f.after = Some(decode_cursor(&value).map_err(|e| {
                    ApiError::bad("invalid_cursor", e).with("parameter", json!("cursor"))
                })?)
            }
            _ => return Err(bad_param(&name, format!("unknown parameter {name}"))),
        }
    }
    Ok(f)
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').any(|m| {
                m.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("text/csv")
            })
        })
}

/// First characters that make a spreadsheet read a cell as a formula (OWASP, CSV
/// injection): a cell starting with one is written with a leading `'`.
pub const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV field, quoted per RFC 4180 when needed. A value that a spreadsheet would take
/// for a formula (it starts with one of [`FORMULA_START`]) is neutralised as OWASP
/// advises: prefixed with a single quote and always quoted, so `=1+1` is written
/// `"'=1+1"`. Caller text (a refused request's `service`, say) reaches the export, and
/// the security team opens it in a spreadsheet.
pub fn csv_field(value: &str) -> String {
    if value.starts_with(FORMULA_START) {
        format!("\"'{}\"", value.replace('"', "\"\""))
    } else if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// The issuances as CSV: a header row, CRLF line ends; scopes joined by spaces; every
/// text cell through [`csv_field`] (formulas neutralised).
pub fn to_csv(items: &[Issuance]) -> String {
    let mut out = ISSUANCE_COLUMNS.join(",");
    out.push_str("\r\n");
    for i in items {
        let fields: Vec<String> = i
            .cells()
            .iter()
            .map(|cell| match cell {
                Cell::Text(v) => v.map(csv_field).unwrap_or_default(),
                Cell::Seconds(v) => v.map(|n| n.to_string()).unwrap_or_default(),
                Cell::Scopes(list) => csv_field(&list.join(" ")),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_response(items: &[Issuance], next: Option<&str>) -> Response {
    let mut resp = (
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        to_csv(items),
    )
        .into_response();
    if let Some(v) = next.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert("x-next-cursor", v);
    }
    resp
}

/// One page of the issuances matching the query, and the cursor of the next.
pub async fn list(
    State(state): State<Shared>,
    headers: HeaderMap,
    _admin: Admin,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let mut filter = parse_filter(params)?;
    let limit = filter.limit;
    filter.limit = limit + 1;
    let mut items = state
        .db
        .issuances(&filter)
        .await
        .map_err(|e| ApiError::internal("querying issuances", e))?;
    let more = i64::try_from(items.len()).unwrap_or(i64::MAX) > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more {
        items.last().map(|i| {
            let time = i64::try_from(i.record.time).unwrap_or(i64::MAX);
            encode_cursor(time, &i.record.id)
        })
    } else {
        None
    };
    if wants_csv(&headers) {
        return Ok(csv_response(&items, next.as_deref()));
    }
    Ok(no_store_json(json!({"items": items, "next_cursor": next})))
}

/// One issuance by id (`404` if absent).
pub async fn one(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let item = state
        .db
        .issuance(&id)
        .await
        .map_err(|e| ApiError::internal("reading an issuance", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no issuance with this id",
            )
        })?;
    if wants_csv(&headers) {
        return Ok(csv_response(std::slice::from_ref(&item), None));
    }
    Ok(no_store_json(item))
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_token_ledger_wire::Record;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = encode_cursor(1700000000, "a:b");
        assert_eq!(decode_cursor(&c).unwrap(), (1700000000, "a:b".to_string()));
        assert!(decode_cursor("!!!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x:y")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("12")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("12:")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("-1:a")).is_err());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_formulas_are_neutralised() {
        assert_eq!(csv_field("=1+1"), "\"'=1+1\"");
        assert_eq!(csv_field("+1"), "\"'+1\"");
        assert_eq!(csv_field("-1"), "\"'-1\"");
        assert_eq!(csv_field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_field("\tx"), "\"'\tx\"");
        assert_eq!(csv_field("\rx"), "\"'\rx\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"u\",\"c\")"),
            "\"'=HYPERLINK(\"\"u\"\",\"\"c\"\")\""
        );
        // Only the first character counts.
        assert_eq!(csv_field("a=1"), "a=1");
        assert_eq!(csv_field(" =1"), " =1");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn csv_rows_follow_the_columns() {
        let record: Record<'static> = serde_json::from_value(json!({
            "id": "a", "time": 10, "decision": "rejected", "reason": "x,y",
            "requested": ["repository:a:pull", "repository:b:pull"], "grant": "password",
            "issuer": "https://token.actions.githubusercontent.com", "policy": "main"
        }))
        .unwrap();
        let csv = to_csv(&[Issuance {
            record,
            received_at: 12,
        }]);
        assert_eq!(
            csv,
            format!(
                "{}\r\na,10,rejected,\"x,y\",,,,,,,repository:a:pull repository:b:pull,,,,,,password,,,12,https://token.actions.githubusercontent.com,main\r\n",
                ISSUANCE_COLUMNS.join(",")
            )
        );
    }

    #[test]
    fn filter_parameters() {
        let p = |q: &[(&str, &str)]| {
            parse_filter(
                q.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
        };
        assert_eq!(p(&[]).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(
            p(&[("since", "1970-01-01T00:01:00Z")]).unwrap().since,
            Some(60)
        );
        assert_eq!(
            p(&[("decision", "rejected")]).unwrap().decision,
            Some(Decision::Rejected)
        );
        assert!(p(&[("since", "yesterday")]).is_err());
        assert!(p(&[("limit", "0")]).is_err());
        assert!(p(&[("limit", "10001")]).is_err());
        assert!(p(&[("decision", "maybe")]).is_err());
        assert!(p(&[("colour", "red")]).is_err());
        assert!(p(&[("subject", "a"), ("subject", "b")]).is_err());
        assert!(p(&[("repository", "a:b")]).is_err());
    }
}
