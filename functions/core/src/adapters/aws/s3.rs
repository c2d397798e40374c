use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::store_error;
use crate::domain::errors::StoreError;
use crate::ports::BlobStore;

pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blobs {
    /// Path-style addressing when a custom endpoint is set: emulators serve one host, not a
    /// subdomain per bucket.
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3_config = aws_sdk_s3::config::Builder::from(config).force_path_style(path_style).build();
        Self { client: aws_sdk_s3::Client::from_conf(s3_config), bucket: bucket.into() }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| store_error("S3", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(response) => response,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(store_error("S3", error)),
        };
        let body = response
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable { service: "S3", detail: format!("reading {key}: {e}") })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn presigned_get_url(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        let get = self.client.get_object().bucket(&self.bucket).key(key);
        let request = get.presigned(presigning(expires_in)?).await.map_err(|e| store_error("S3", e))?;
        Ok(request.uri().to_string())
    }

    async fn presigned_put_url(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        // No content type is signed: the client PUTs the bytes with no header it must match.
        let put = self.client.put_object().bucket(&self.bucket).key(key);
        let request = put.presigned(presigning(expires_in)?).await.map_err(|e| store_error("S3", e))?;
        Ok(request.uri().to_string())
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, StoreError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| StoreError::Refused { service: "S3", detail: e.to_string() })
}
