//! Translates API Gateway's authorizer event (HTTP API, payload format 2.0) into a call of
//! `authorize`, and its answer into a simple response: `{"isAuthorized": true, "context":
//! {"tenant_id", "key_id"}}` for a good key, `{"isAuthorized": false}` for any other. The
//! context reaches the API as `requestContext.authorizer.lambda`.

use std::time::Instant;

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use aws_lambda_events::http::header::AUTHORIZATION;
use chrono::Utc;
use imgpipe_core::ports::AuthenticateKeys;
use imgpipe_core::use_cases::authorize::{Caller, authorize};
use lambda_runtime::LambdaEvent;
use serde::Serialize;

pub struct Authorizer<K> {
    pub keys: K,
}

/// The simple response. Not aws_lambda_events' `ApiGatewayV2CustomAuthorizerSimpleResponse`:
/// that one always writes a `context`, and a refusal should carry none.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    is_authorized: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<CallerContext>,
}

/// What the API reads from `requestContext.authorizer.lambda`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct CallerContext {
    tenant_id: String,
    key_id: String,
}

impl From<Option<Caller>> for Decision {
    fn from(caller: Option<Caller>) -> Self {
        let context = caller.map(|caller| CallerContext { tenant_id: caller.tenant_id.into(), key_id: caller.key_id });
        Self { is_authorized: context.is_some(), context }
    }
}

impl<K: AuthenticateKeys> Authorizer<K> {
    /// A table that cannot be read fails the invocation: API Gateway then answers 500 and, unlike
    /// an `isAuthorized: false`, caches nothing, so the key works again as soon as the table
    /// does (a cached refusal would lock a good key out for the cache's TTL, and tell its owner
    /// the key is wrong). Either way nobody is admitted.
    pub async fn handle(
        &self,
        event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>,
    ) -> Result<Decision, lambda_runtime::Error> {
        let started = Instant::now();
        // A header that is not visible ASCII is no key; `authorize` refuses a missing one.
        let header = event.payload.headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok());
        let caller = match authorize(&self.keys, header, Utc::now()).await {
            Ok(caller) => caller,
            Err(error) => {
                tracing::error!(stage = "authorizer", error = %error, "keys unreadable: refused with an error");
                return Err(error.into());
            }
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &caller {
            Some(Caller { tenant_id, key_id }) => {
                tracing::info!(stage = "authorizer", admitted = true, tenant_id = %tenant_id, key_id, duration_ms)
            }
            None => tracing::info!(stage = "authorizer", admitted = false, duration_ms),
        }
        Ok(caller.into())
    }
}

#[cfg(test)]
mod tests {
    use imgpipe_core::adapters::memory::MemoryTable;
    use imgpipe_core::domain::api_key::ApiKey;
    use imgpipe_core::use_cases::manage_keys::{create_key, revoke_key};
    use lambda_runtime::Context;
    use serde_json::{Value, json};

    use super::*;

    /// aws_lambda_events' example of this event (its src/fixtures), as API Gateway sends it.
    const EXAMPLE_EVENT: &str = include_str!("../fixtures/example-apigw-v2-custom-authorizer-v2-request.json");

    /// The example event with `headers` replaced, as the JSON would arrive from API Gateway.
    fn event(headers: Value) -> LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request> {
        let mut event: Value = serde_json::from_str(EXAMPLE_EVENT).unwrap();
        event["headers"] = headers;
        LambdaEvent::new(serde_json::from_value(event).unwrap(), Context::default())
    }

    async fn answer(authorizer: &Authorizer<MemoryTable>, headers: Value) -> Value {
        serde_json::to_value(authorizer.handle(event(headers)).await.unwrap()).unwrap()
    }

    async fn authorizer_with_key() -> (Authorizer<MemoryTable>, ApiKey) {
        let authorizer = Authorizer { keys: MemoryTable::default() };
        let (key, _) = create_key(&authorizer.keys, "acme".parse().unwrap()).await.unwrap();
        (authorizer, key)
    }

    #[tokio::test]
    async fn a_good_key_is_admitted_with_its_tenant_and_key_id_as_context() {
        let (authorizer, key) = authorizer_with_key().await;
        let bearer = format!("Bearer {}", key.reveal());
        // Payload format 2.0 lower-cases header names; the header is found either way.
        for headers in [json!({"authorization": bearer, "Header1": "value1"}), json!({"Authorization": bearer})] {
            assert_eq!(
                answer(&authorizer, headers).await,
                json!({"isAuthorized": true, "context": {"tenant_id": "acme", "key_id": key.key_id()}})
            );
        }
    }

    #[tokio::test]
    async fn any_other_header_is_refused_without_a_context() {
        let (authorizer, key) = authorizer_with_key().await;
        let unknown = format!("Bearer {}", ApiKey::generate().unwrap().reveal());
        let wrong_secret = format!("Bearer ik_{}_{}", key.key_id(), "0".repeat(64));
        let cases = [
            json!({"Header1": "value1"}),
            json!({"authorization": ""}),
            json!({"authorization": "Bearer not-a-key"}),
            json!({"authorization": format!("Basic {}", key.reveal())}),
            json!({"authorization": unknown}),
            json!({"authorization": wrong_secret}),
        ];
        for headers in cases {
            assert_eq!(answer(&authorizer, headers.clone()).await, json!({"isAuthorized": false}), "{headers}");
        }
        revoke_key(&authorizer.keys, key.key_id()).await.unwrap();
        let revoked = json!({"authorization": format!("Bearer {}", key.reveal())});
        assert_eq!(answer(&authorizer, revoked).await, json!({"isAuthorized": false}), "revoked");
    }

    #[tokio::test]
    async fn a_table_that_cannot_be_read_refuses_with_an_error_never_admits() {
        let (authorizer, key) = authorizer_with_key().await;
        authorizer.keys.outage.set(true);
        let headers = json!({"authorization": format!("Bearer {}", key.reveal())});
        assert!(authorizer.handle(event(headers)).await.is_err());
    }
}
