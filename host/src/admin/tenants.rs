//! `GET tenants`, `GET tenants/{id}` and `POST tenants/{id}/reload`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AdminError;
use crate::service::{Service, TenantStatus};
use crate::tenant::TenantId;

/// Every tenant, in id order: `{"tenants": [...]}`.
pub(super) async fn list(State(service): State<Arc<Service>>) -> Json<Value> {
    Json(json!({ "tenants": service.tenants() }))
}

/// One tenant.
pub(super) async fn show(
    State(service): State<Arc<Service>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TenantStatus>, AdminError> {
    let tenant = tenant_id(id)?;
    service
        .tenant(&tenant)
        .map(Json)
        .ok_or_else(|| unknown(&tenant))
}

/// Re-reads the configuration and re-applies the tenant's module.
pub(super) async fn reload(
    State(service): State<Arc<Service>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, AdminError> {
    let tenant = tenant_id(id)?;
    let status = service.reload(&tenant).await?;
    Ok(Json(json!({ "result": "applied", "tenant": status })))
}

/// The tenant id in the path, or 400.
pub(super) fn tenant_id(id: Result<Path<String>, PathRejection>) -> Result<TenantId, AdminError> {
    let Path(id) = id.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    id.parse()
        .map_err(|e: crate::tenant::ParseTenantIdError| AdminError::BadRequest(e.to_string()))
}

pub(super) fn unknown(tenant: &TenantId) -> AdminError {
    AdminError::NotFound(format!("tenant {tenant} is not configured"))
}
