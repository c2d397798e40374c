use aws_lambda_events::dynamodb::{Event, EventRecord};
use imgpipe_core::aws::{DynamoTable, S3Blobs};
use imgpipe_core::config::NotifierConfig;
use imgpipe_core::finish_request::{FinishPorts, Finished, finish_request};
use imgpipe_core::request::finishes_request;
use imgpipe_core::request_id::RequestId;
use imgpipe_core::webhook::HttpWebhookSender;
use serde::Deserialize;

pub struct Notifier {
    pub table: DynamoTable,
    pub blobs: S3Blobs,
    pub webhooks: HttpWebhookSender,
    pub config: NotifierConfig,
}

/// The parts of a request item's stream image the notifier reads.
#[derive(Deserialize)]
struct Counters {
    request_id: RequestId,
    remaining: Option<u64>,
}

/// The request a stream record finishes, if it is the write that took `remaining` to 0.
fn finished_request(record: &EventRecord) -> Option<RequestId> {
    let new: Counters = serde_dynamo::from_item(record.change.new_image.clone()).ok()?;
    let old_remaining = serde_dynamo::from_item::<_, Counters>(record.change.old_image.clone())
        .ok()?
        .remaining;
    finishes_request(old_remaining, new.remaining).then_some(new.request_id)
}

impl Notifier {
    /// Records are handled in order. Finishing is idempotent, so on a transient failure the
    /// whole batch is handed back and replayed: records already handled change nothing.
    pub async fn handle(&self, event: Event) -> Result<(), lambda_runtime::Error> {
        for record in &event.records {
            let Some(request_id) = finished_request(record) else {
                continue;
            };
            let ports = FinishPorts {
                table: &self.table,
                blobs: &self.blobs,
                webhooks: &self.webhooks,
            };
            match finish_request(ports, request_id, self.config.url_lifetime).await {
                Ok(Finished::Now(status)) => {
                    tracing::info!(request_id = %request_id, stage = "finished", status = status.as_str());
                }
                Ok(Finished::Already) => tracing::info!(request_id = %request_id, stage = "replay"),
                Err(error) if error.is_transient() => return Err(error.into()),
                Err(error) => {
                    tracing::error!(request_id = %request_id, stage = "finish", error = %error)
                }
            }
        }
        Ok(())
    }
}
