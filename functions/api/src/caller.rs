//! Who is calling: the tenant the API key's authorizer admitted, from the request context API
//! Gateway passes on (`requestContext.authorizer.lambda`). The API takes the tenant from there
//! only, and refuses a request without it: a route that reaches the API without the authorizer
//! is a deployment mistake, and must not become an open door.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use imgpipe_core::domain::request::RequestRecord;
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::domain::tenant::TenantId;
use imgpipe_core::ports::ReadRequest;
use lambda_http::request::RequestContext;

use crate::answers::error;
use crate::routes::{AppState, unavailable};

/// The caller's tenant, as its key's authorizer said.
pub struct Caller(pub TenantId);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let tenant = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(context)) => context.authorizer.as_ref().and_then(|authorizer| {
                authorizer.fields.get("tenant_id").and_then(|tenant| tenant.as_str()).and_then(|t| t.parse().ok())
            }),
            _ => None,
        };
        tenant.map(Caller).ok_or_else(|| {
            tracing::error!(stage = "caller", "a request reached the API without its authorizer's tenant");
            error(StatusCode::UNAUTHORIZED, "unauthorized", "send your API key: Authorization: Bearer ik_...")
        })
    }
}

/// The caller's request named by the path's `{request_id}`: another tenant's request is as
/// unknown as one that does not exist (404, not 403), so ids leak nothing.
pub struct OwnRequest(pub RequestRecord);

impl FromRequestParts<Arc<AppState>> for OwnRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Caller(tenant) = Caller::from_request_parts(parts, state).await?;
        let not_found = || error(StatusCode::NOT_FOUND, "not_found", "no request with this id");
        let Path(params) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        let id: RequestId = params.get("request_id").and_then(|raw| raw.parse().ok()).ok_or_else(not_found)?;
        match state.table.get(id).await {
            Ok(Some(request)) if request.tenant_id == tenant => Ok(Self(request)),
            Ok(_) => Err(not_found()),
            Err(cause) => Err(unavailable("find_request", &cause)),
        }
    }
}
