//! `POST /v1/ingest`: a gateway's batch `{"records": [...]}` of wire [`Record`]s, parsed
//! and validated whole (one bad record refuses the batch, naming its index and field),
//! then stored idempotently on `id`.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_token_ledger_wire::{
    FieldError, IngestReply, Record, MAX_BATCH_BYTES, MAX_BATCH_RECORDS,
};
use serde_json::{json, Value};

use super::extract::{Gateway, IngestSecret};
use super::{read_body, ApiError, Shared};
use crate::db;

/// Stores a batch: `{"accepted":N,"duplicates":M}`.
pub async fn ingest(
    State(state): State<Shared>,
    _gateway: Gateway<IngestSecret>,
    req: Request,
) -> Result<Response, ApiError> {
    let body = read_body(req, MAX_BATCH_BYTES).await?;
    let records = parse_batch(&body)?;
    let now = db::now();
    let accepted = state
        .db
        .insert_batch(&records, now)
        .await
        .map_err(|e| ApiError::internal("storing the batch", e))?;
    let total = u64::try_from(records.len()).unwrap_or(u64::MAX);
    let duplicates = total.saturating_sub(accepted);
    let lag = records
        .iter()
        .map(|r| r.time)
        .max()
        .map(|t| now.saturating_sub(i64::try_from(t).unwrap_or(i64::MAX)));
    state.metrics.batch(accepted, duplicates, lag);
    tracing::debug!("batch: {accepted} stored, {duplicates} duplicates");
    Ok(Json(IngestReply {
        accepted,
        duplicates,
    })
    .into_response())
}

/// The records of an ingest body, every one parsed and validated, or the 400 that refuses
/// the whole batch (`invalid_json`, `invalid_batch`, `too_many_records`, or
/// `invalid_record` with the record's `index` and `field`).
pub fn parse_batch(body: &[u8]) -> Result<Vec<Record<'static>>, ApiError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("invalid_json", format!("the body is not JSON: {e}")))?;
    let Value::Object(mut top) = doc else {
        return Err(ApiError::bad(
            "invalid_batch",
            "the body must be {\"records\": [...]}",
        ));
    };
    if let Some(k) = top.keys().find(|k| k.as_str() != "records") {
        return Err(
            ApiError::bad("invalid_batch", format!("unknown field {k}")).with("field", json!(k))
        );
    }
    let Some(Value::Array(items)) = top.remove("records") else {
        return Err(ApiError::bad("invalid_batch", "records must be an array"));
    };
    if items.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::bad(
            "too_many_records",
            format!(
                "{} records, at most {MAX_BATCH_RECORDS} per batch",
                items.len()
            ),
        ));
    }
    let mut records = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let record = parse_record(item).map_err(|e| {
            ApiError::bad(
                "invalid_record",
                format!("records[{index}].{}: {}", e.field, e.message),
            )
            .with("index", json!(index))
            .with("field", json!(e.field))
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Parses and validates one record of a batch, naming the offending field (its JSON path
/// for a value of the wrong type).
pub fn parse_record(value: Value) -> Result<Record<'static>, FieldError> {
    // serde would also take a struct from a JSON array, by position.
    if !value.is_object() {
        return Err(FieldError::new(".", "a record must be a JSON object"));
    }
    let record: Record<'static> = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names the missing or unknown field in the message, not the path.
        let field = if path == "." {
            field_in_message(&inner).unwrap_or_else(|| ".".to_string())
        } else {
            path
        };
        FieldError {
            field,
            message: inner,
        }
    })?;
    record.validate()?;
    Ok(record)
}

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`" messages.
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_filter_audit_record() {
        let r = parse_record(json!({
            "jti": "abc", "time": 10, "decision": "issued", "reason": "issued",
            "subject": "alice", "binding": "jkt:0123", "requested": ["repository:a/b:pull"],
            "granted": ["repository:a/b:pull"], "exp": 310
        }))
        .unwrap();
        assert_eq!(r.id, "abc");
        assert_eq!(r.binding.as_deref(), Some("jkt:0123"));
    }

    #[test]
    fn names_the_bad_field() {
        let bad = |v: Value| parse_record(v).unwrap_err().field;
        assert_eq!(bad(json!({"time": 1, "decision": "issued"})), "id");
        assert_eq!(bad(json!({"id": "a", "decision": "issued"})), "time");
        assert_eq!(bad(json!({"id": "a", "time": 1})), "decision");
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "maybe"})),
            "decision"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": "x", "decision": "issued"})),
            "time"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": -1, "decision": "issued"})),
            "time"
        );
        assert_eq!(
            bad(json!({"id": "", "time": 1, "decision": "issued"})),
            "id"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "issued", "token": "x"})),
            "token"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "issued", "grant": "implicit"})),
            "grant"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "issued", "binding": "mtls"})),
            "binding"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "issued", "requested": [1]})),
            "requested[0]"
        );
        assert_eq!(bad(json!(["a", 1, "issued"])), ".");
    }

    /// The detail sentences a gateway logs are the ones the ledger always gave.
    #[test]
    fn refusals_name_index_field_and_reason() {
        let err = |body: Value| parse_batch(body.to_string().as_bytes()).unwrap_err();
        let ok = json!({"id": "a", "time": 1, "decision": "issued"});
        let e = err(json!({"records": [ok, {"id": "b", "time": 1, "decision": "maybe"}]}));
        assert_eq!(e.code(), "invalid_record");
        assert_eq!(
            e.detail(),
            "records[1].decision: must be issued or rejected"
        );
        let e = err(json!({"records": [{"id": "b", "time": -5, "decision": "issued"}]}));
        assert_eq!(
            e.detail(),
            "records[0].time: must be unix seconds, not negative"
        );
        let e =
            err(json!({"records": [{"id": "b", "time": 1, "decision": "issued", "grant": "x"}]}));
        assert_eq!(
            e.detail(),
            "records[0].grant: must be get, password or refresh_token"
        );
        assert_eq!(err(json!({"records": {}})).code(), "invalid_batch");
        assert_eq!(err(json!({"records": [], "x": 1})).code(), "invalid_batch");
        assert_eq!(
            err(json!({"records": vec![ok; MAX_BATCH_RECORDS + 1]})).code(),
            "too_many_records"
        );
        assert_eq!(parse_batch(b"{no").unwrap_err().code(), "invalid_json");
        assert_eq!(parse_batch(br#"{"records":[]}"#).unwrap().len(), 0);
    }
}
