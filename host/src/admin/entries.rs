//! `GET audit?tenant={id}&limit={n}`: a tenant's most recent audit entries.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use super::{AdminError, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
use crate::audit::Entry;
use crate::service::Service;
use crate::tenant::TenantId;

/// The newest entries first: `{"tenant": id, "entries": [...]}`, each entry
/// as stored (id `tenant#seq`, seq, kind, at in Unix milliseconds, body,
/// prev_sha256, sha256), so that a client can check the hashes itself.
pub(super) async fn recent(
    State(service): State<Arc<Service>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    let Query(params) = query.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    if let Some(other) = params.keys().find(|k| *k != "tenant" && *k != "limit") {
        return Err(AdminError::BadRequest(format!(
            "unknown parameter {other:?}; this route takes tenant and limit"
        )));
    }
    let tenant: TenantId = params
        .get("tenant")
        .ok_or_else(|| AdminError::BadRequest("the tenant parameter is required".to_owned()))?
        .parse()
        .map_err(|e: crate::tenant::ParseTenantIdError| AdminError::BadRequest(e.to_string()))?;
    let limit = match params.get("limit") {
        None => DEFAULT_AUDIT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_AUDIT_LIMIT).contains(n))
            .ok_or_else(|| {
                AdminError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}, got {:?}",
                    text.chars().take(40).collect::<String>()
                ))
            })?,
    };
    if service.tenant(&tenant).is_none() {
        return Err(super::tenants::unknown(&tenant));
    }
    let entries = service
        .audit()
        .recent(&tenant, limit)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    let entries: Vec<Value> = entries.iter().map(entry_json).collect();
    Ok(Json(json!({ "tenant": tenant, "entries": entries })))
}

fn entry_json(entry: &Entry) -> Value {
    json!({
        "id": entry.id.to_string(),
        "seq": entry.id.seq(),
        "kind": entry.kind,
        "at": entry.at,
        "body": entry.body,
        "prev_sha256": entry.prev_sha256,
        "sha256": entry.sha256,
    })
}
