//! Who is calling: the tenant the API key's authorizer admitted, from the request context API
//! Gateway passes on (`requestContext.authorizer.lambda`). The API takes the tenant from there
//! only, and refuses a request without it: a route that reaches the API without the authorizer
//! is a deployment mistake, and must not become an open door.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use imgpipe_core::domain::tenant::TenantId;
use lambda_http::request::RequestContext;

use crate::answers::error;

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
