//! Secrets Manager: the webhook signing key, read once at start-up by the functions that sign
//! or show webhook secrets (the API and the notifier).

use crate::domain::errors::StoreError;
use crate::domain::webhook_signature::WebhookSigningKey;

use super::store_error;

/// The current value of the secret `secret_id` (a name or ARN) as the signing key.
pub async fn webhook_signing_key(
    config: &aws_config::SdkConfig,
    secret_id: &str,
) -> Result<WebhookSigningKey, StoreError> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let value =
        client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| store_error("SecretsManager", e))?;
    let material = value.secret_string().map(str::as_bytes).or(value.secret_binary().map(|blob| blob.as_ref()));
    let material = material
        .ok_or_else(|| StoreError::Refused { service: "SecretsManager", detail: "the secret has no value".into() })?;
    WebhookSigningKey::new(material)
        .map_err(|weak| StoreError::Refused { service: "SecretsManager", detail: weak.to_string() })
}
