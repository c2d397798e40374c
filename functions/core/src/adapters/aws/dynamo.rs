//! The request table: one partition per request, holding the request item (`sk = REQUEST`)
//! and one item per image with a result (`sk = IMG#<index>`), so a single query lists a
//! request's results in output order.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity, TransactWriteItem,
    Update, WriteRequest,
};
use chrono::{DateTime, Utc};

use super::store_error;
use crate::domain::errors::StoreError;
use crate::domain::fetch_jobs::FetchJob;
use crate::domain::request::{
    FinalState, ImageJob, ImageOutcome, ImageRecord, ImageState, Progress, RequestRecord, RequestStatus, Transition,
};
use crate::domain::request_id::RequestId;
use crate::ports::{
    CarryOverResults, FindIdleRequests, JobStanding, MoveRequest, ReadRequest, ReadResults, RecordResult, WebhookOutbox,
};

const REQUEST_SK: &str = "REQUEST";
/// A sparse index of the requests that are not final: only they carry `open_shard`, so the
/// sweeper finds stuck requests without scanning the table. Sorted by `created_at`, which
/// never changes: sorted by `updated_at`, every image's result would also rewrite the index
/// entry (2 more write units per image, all on the one `OPEN` partition of the index).
const OPEN_REQUESTS_INDEX: &str = "OpenRequests";
const OPEN_SHARD: &str = "OPEN";
/// A sparse index of the failed image items only (they carry `failed_pk`, their request's
/// `pk`), sorted by `sk`: the status lists failures without reading the successes.
const FAILED_IMAGES_INDEX: &str = "FailedImages";
/// A sparse index of the request items by tenant (`tenant_requests`) and `created_at`: a
/// tenant's requests, newest first. Only request items carry the attribute.
const TENANT_REQUESTS_INDEX: &str = "TenantRequests";
const TENANT_REQUESTS_KEY: &str = "tenant_requests";
/// Final requests whose webhook is still owed (`WebhookOutbox`).
const WEBHOOK_SHARD: &str = "WEBHOOK";

type Item = HashMap<String, AttributeValue>;

pub struct DynamoTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// How long items live before DynamoDB's TTL removes them.
    item_lifetime: Duration,
}

fn pk(id: RequestId) -> AttributeValue {
    AttributeValue::S(format!("REQ#{id}"))
}

fn image_sk(image_index: u32) -> AttributeValue {
    AttributeValue::S(format!("IMG#{image_index:08}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// One fixed format, so timestamps compare correctly as strings (the idle-request index).
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn corrupt(error: serde_dynamo::Error) -> StoreError {
    StoreError::Refused { service: "DynamoDB", detail: format!("item does not match its type: {error}") }
}

impl DynamoTable {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>, item_lifetime: Duration) -> Self {
        Self { client: aws_sdk_dynamodb::Client::new(config), table: table.into(), item_lifetime }
    }

    fn item<T: serde::Serialize>(&self, value: &T, pk: AttributeValue, sk: AttributeValue) -> Result<Item, StoreError> {
        let mut item: Item = serde_dynamo::to_item(value).map_err(corrupt)?;
        let expires_at = Utc::now().timestamp() + self.item_lifetime.as_secs() as i64;
        item.insert("pk".into(), pk);
        item.insert("sk".into(), sk);
        item.insert("expires_at".into(), n(expires_at));
        Ok(item)
    }

    /// The request item as `create` writes it.
    fn request_item(&self, request: &RequestRecord) -> Result<Item, StoreError> {
        let mut item = self.item(request, pk(request.request_id), s(REQUEST_SK))?;
        item.insert("open_shard".into(), s(OPEN_SHARD));
        item.insert(TENANT_REQUESTS_KEY.into(), s(request.tenant_id.as_str()));
        item.insert("created_at".into(), s(timestamp(request.created_at)));
        item.insert("updated_at".into(), s(timestamp(request.updated_at)));
        Ok(item)
    }

    /// An image's item as `record` writes it, with its result.
    fn result_item(&self, job: &ImageJob, outcome: &ImageOutcome, now: DateTime<Utc>) -> Result<Item, StoreError> {
        let id = job.request_id;
        let mut item = self.item(&ImageRecord::with_outcome(job, outcome), pk(id), image_sk(job.image_index))?;
        item.insert("updated_at".into(), s(timestamp(now)));
        if outcome.state() == ImageState::Failed {
            item.insert("failed_pk".into(), pk(id));
        }
        Ok(item)
    }

    /// The item under `key`, read consistently (after a conditional write, the answer must be
    /// what that write saw); `None` when there is none.
    async fn read_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let response = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        Ok(response.item)
    }

    fn request_key(id: RequestId) -> Item {
        HashMap::from([("pk".into(), pk(id)), ("sk".into(), s(REQUEST_SK))])
    }

    /// A conditional update whose failed condition means "already done", not an error.
    async fn conditional_update(
        &self,
        id: RequestId,
        update: &str,
        condition: &str,
        values: Item,
    ) -> Result<Transition, StoreError> {
        let mut call = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::request_key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values));
        // DynamoDB refuses a name that the expressions do not use.
        if update.contains("#status") || condition.contains("#status") {
            call = call.expression_attribute_names("#status", "status");
        }
        let result = call.send().await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(Transition::AlreadyDone)
            }
            Err(error) => Err(store_error("DynamoDB", error)),
        }
    }

    /// The requests under one `open_shard` of the sparse `OpenRequests` index (open ones, or
    /// final ones with a webhook waiting), those created before `created_before` if given.
    async fn shard_ids(
        &self,
        shard: &str,
        created_before: Option<DateTime<Utc>>,
    ) -> Result<Vec<RequestId>, StoreError> {
        let condition = match created_before {
            Some(_) => "open_shard = :shard AND created_at < :cutoff",
            None => "open_shard = :shard",
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OPEN_REQUESTS_INDEX)
            .key_condition_expression(condition)
            .expression_attribute_values(":shard", s(shard));
        if let Some(cutoff) = created_before {
            query = query.expression_attribute_values(":cutoff", s(timestamp(cutoff)));
        }
        let pages = query.into_paginator().items().send();
        let items: Vec<Item> = pages.try_collect().await.map_err(|e| store_error("DynamoDB", e))?;
        let ids = items.iter().filter_map(|item| match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk.strip_prefix("REQ#")?.parse().ok(),
            _ => None,
        });
        Ok(ids.collect())
    }
}

#[async_trait]
impl ReadRequest for DynamoTable {
    async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>, StoreError> {
        let item = self.read_item(Self::request_key(id)).await?;
        item.map(|item| serde_dynamo::from_item(item).map_err(corrupt)).transpose()
    }
}

#[async_trait]
impl ReadResults for DynamoTable {
    async fn recorded_images(&self, id: RequestId) -> Result<Vec<ImageRecord>, StoreError> {
        self.recorded_images_between(id, 0, u32::MAX).await
    }

    async fn recorded_images_between(
        &self,
        id: RequestId,
        first: u32,
        last: u32,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
            .expression_attribute_values(":pk", pk(id))
            .expression_attribute_values(":first", image_sk(first))
            .expression_attribute_values(":last", image_sk(last))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let items: Vec<Item> = pages.try_collect().await.map_err(|e| store_error("DynamoDB", e))?;
        items.into_iter().map(|item| serde_dynamo::from_item(item).map_err(corrupt)).collect()
    }

    async fn failed_images(&self, id: RequestId, limit: usize) -> Result<Vec<ImageRecord>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX).max(1);
        let response = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(FAILED_IMAGES_INDEX)
            .key_condition_expression("failed_pk = :pk")
            .expression_attribute_values(":pk", pk(id))
            .limit(limit)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        let items = response.items.unwrap_or_default();
        items.into_iter().map(|item| serde_dynamo::from_item(item).map_err(corrupt)).collect()
    }

    async fn job_standing(&self, job: &FetchJob) -> Result<JobStanding, StoreError> {
        // At most MAX_IMAGES_PER_JOB images and the request: BatchGetItem's 100 keys.
        let image_key = |index| HashMap::from([("pk".into(), pk(job.request_id)), ("sk".into(), image_sk(index))]);
        let mut keys: Vec<Item> = job.images.iter().map(|slot| image_key(slot.image_index)).collect();
        keys.push(Self::request_key(job.request_id));
        let items = self.read_items(keys).await?;
        let sk = |item: &Item| match item.get("sk") {
            Some(AttributeValue::S(sk)) => sk.clone(),
            _ => String::new(),
        };
        if items.iter().filter(|item| sk(item) != REQUEST_SK).count() == job.images.len() {
            return Ok(JobStanding::Recorded);
        }
        let open = [RequestStatus::Pending.as_str(), RequestStatus::Processing.as_str()];
        let request_open = items.iter().any(
            |item| matches!(item.get("status"), Some(AttributeValue::S(status)) if open.contains(&status.as_str())),
        );
        Ok(if request_open { JobStanding::ToDo } else { JobStanding::RequestEnded })
    }
}

impl DynamoTable {
    /// The items under `keys` (of this table), read consistently in one BatchGetItem call:
    /// `sk` and `status` of those found.
    async fn read_items(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut wanted = KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true);
        wanted = wanted.projection_expression("sk, #status").expression_attribute_names("#status", "status");
        let wanted = wanted.build().map_err(|e| StoreError::Refused { service: "DynamoDB", detail: e.to_string() })?;
        let (found, unprocessed) = self.batch_get(wanted).await?;
        if !unprocessed.is_empty() {
            let detail = "part of a job's read was left unprocessed".to_string();
            return Err(StoreError::Unavailable { service: "DynamoDB", detail });
        }
        Ok(found)
    }

    /// One BatchGetItem call on this table: the items found, and the keys DynamoDB left
    /// unprocessed (when throttled), which the caller asks for again or gives up on.
    async fn batch_get(&self, wanted: KeysAndAttributes) -> Result<(Vec<Item>, Vec<Item>), StoreError> {
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.table, wanted)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        let found = output.responses.and_then(|mut found| found.remove(&self.table)).unwrap_or_default();
        let unprocessed = output
            .unprocessed_keys
            .and_then(|mut left| left.remove(&self.table))
            .map(|left| left.keys)
            .unwrap_or_default();
        Ok((found, unprocessed))
    }
}

#[async_trait]
impl MoveRequest for DynamoTable {
    async fn mark_processing(&self, id: RequestId, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        let values = HashMap::from([
            (":processing".into(), s(RequestStatus::Processing.as_str())),
            (":pending".into(), s(RequestStatus::Pending.as_str())),
            (":now".into(), s(timestamp(now))),
        ]);
        self.conditional_update(id, "SET #status = :processing, updated_at = :now", "#status = :pending", values).await
    }

    async fn finish(&self, id: RequestId, ending: &FinalState, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        self.write_final_state(id, ending, now, FinalWrite::Finish).await
    }

    async fn cancel(
        &self,
        seen: &RequestRecord,
        ending: &FinalState,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.write_final_state(seen.request_id, ending, now, FinalWrite::Cancel(seen)).await
    }

    async fn record_output_csv(&self, id: RequestId, key: &str) -> Result<Transition, StoreError> {
        let values =
            HashMap::from([(":key".into(), s(key)), (":cancelled".into(), s(RequestStatus::Cancelled.as_str()))]);
        let condition = "#status = :cancelled AND attribute_not_exists(output_csv_key)";
        self.conditional_update(id, "SET output_csv_key = :key", condition, values).await
    }
}

/// Which write makes a request final: `finish` (every image has its result), or `cancel` of the
/// request as it was seen.
enum FinalWrite<'a> {
    Finish,
    Cancel(&'a RequestRecord),
}

impl DynamoTable {
    /// The one conditional write that makes a request final (`MoveRequest::finish`, `cancel`),
    /// with its webhook owed and its images given back to its tenant's quota.
    async fn write_final_state(
        &self,
        id: RequestId,
        ending: &FinalState,
        now: DateTime<Utc>,
        write: FinalWrite<'_>,
    ) -> Result<Transition, StoreError> {
        let mut set = vec!["#status = :final", "completed_at = :now", "updated_at = :now"];
        let mut values = HashMap::from([
            (":final".into(), s(ending.status.as_str())),
            (":pending".into(), s(RequestStatus::Pending.as_str())),
            (":processing".into(), s(RequestStatus::Processing.as_str())),
            (":now".into(), s(timestamp(now))),
        ]);
        let mut condition = "#status IN (:pending, :processing)".to_string();
        if let FinalWrite::Cancel(seen) = write {
            // The counts as seen, so that `cancelled` is exactly the images without a result;
            // taking `remaining` to 0 wakes the notifier (the stream's filter) to write the CSVs.
            set.extend(["cancelled = :left", "remaining = :zero_left"]);
            condition.push_str(" AND remaining = :left AND succeeded = :seen_succeeded AND failed = :seen_failed");
            values.insert(":left".into(), n(seen.pending_images()));
            values.insert(":zero_left".into(), n(0));
            values.insert(":seen_succeeded".into(), n(seen.succeeded));
            values.insert(":seen_failed".into(), n(seen.failed));
        }
        if let Some(key) = &ending.output_csv_key {
            set.push("output_csv_key = :key");
            values.insert(":key".into(), s(key));
        }
        if let Some(reason) = &ending.failure_reason {
            set.push("failure_reason = :reason");
            values.insert(":reason".into(), s(reason));
        }
        // A webhook owed moves the request from the open requests' shard of the sparse index
        // to the webhooks' one, in this same write; without one, it leaves the index.
        let update = match ending.webhook_due_at {
            Some(due_at) => {
                set.extend(["open_shard = :webhook", "webhook_next_at = :due", "webhook_failed_deliveries = :zero"]);
                values.insert(":webhook".into(), s(WEBHOOK_SHARD));
                values.insert(":due".into(), s(timestamp(due_at)));
                values.insert(":zero".into(), n(0));
                format!("SET {}", set.join(", "))
            }
            None => format!("SET {} REMOVE open_shard", set.join(", ")),
        };
        let request = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::request_key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Refused { service: "DynamoDB", detail: e.to_string() })?;
        // Its images go back to its tenant's quota in the same write: once, since the request's
        // condition lets this write through once.
        let quota = self.give_back_images(&ending.tenant_id, ending.open_images)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(request).build())
            .transact_items(TransactWriteItem::builder().update(quota).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(error) if cancellation_codes(&error).first() == Some(&Some("ConditionalCheckFailed")) => {
                Ok(Transition::AlreadyDone)
            }
            Err(error) => Err(store_error("DynamoDB", error)),
        }
    }
}

#[async_trait]
impl FindIdleRequests for DynamoTable {
    async fn idle_requests(&self, cutoff: DateTime<Utc>) -> Result<Vec<RequestId>, StoreError> {
        // The index holds the open requests by creation time: only one created before the
        // cutoff can have been idle since. Whether it was is on its own item.
        let ids = self.shard_ids(OPEN_SHARD, Some(cutoff)).await?;
        let mut idle = Vec::new();
        for id in ids {
            if self.get(id).await?.is_some_and(|request| !request.status.is_final() && request.updated_at < cutoff) {
                idle.push(id);
            }
        }
        Ok(idle)
    }

    async fn note_sweep_failure(&self, id: RequestId) -> Result<u32, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::request_key(id)))
            .update_expression("ADD sweep_failures :one")
            .condition_expression("#status IN (:pending, :processing)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":pending", s(RequestStatus::Pending.as_str()))
            .expression_attribute_values(":processing", s(RequestStatus::Processing.as_str()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        match output.attributes().and_then(|item| item.get("sweep_failures")) {
            Some(AttributeValue::N(count)) => Ok(count.parse().unwrap_or(u32::MAX)),
            _ => Err(StoreError::Refused { service: "DynamoDB", detail: "no sweep_failures in the answer".into() }),
        }
    }

    async fn clear_sweep_failures(&self, id: RequestId) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::request_key(id)))
            .update_expression("SET sweep_failures = :zero")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        Ok(())
    }
}

#[async_trait]
impl WebhookOutbox for DynamoTable {
    async fn owed_webhooks(&self) -> Result<Vec<RequestId>, StoreError> {
        self.shard_ids(WEBHOOK_SHARD, None).await
    }

    async fn claim_webhook(
        &self,
        id: RequestId,
        due_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        let values = HashMap::from([(":due".into(), s(timestamp(due_at))), (":until".into(), s(timestamp(until)))]);
        self.conditional_update(id, "SET webhook_next_at = :until", "webhook_next_at = :due", values).await
    }

    async fn defer_webhook(
        &self,
        id: RequestId,
        failed_deliveries: u32,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let values = HashMap::from([
            (":failed_deliveries".into(), n(failed_deliveries)),
            (":next".into(), s(timestamp(next_at))),
            (":completed".into(), s(RequestStatus::Completed.as_str())),
            (":with_errors".into(), s(RequestStatus::CompletedWithErrors.as_str())),
            (":failed".into(), s(RequestStatus::Failed.as_str())),
            (":cancelled".into(), s(RequestStatus::Cancelled.as_str())),
        ]);
        let update = "SET webhook_failed_deliveries = :failed_deliveries, webhook_next_at = :next";
        let condition =
            "#status IN (:completed, :with_errors, :failed, :cancelled) AND attribute_exists(webhook_next_at)";
        self.conditional_update(id, update, condition, values).await?;
        Ok(())
    }

    async fn end_webhook(&self, id: RequestId) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::request_key(id)))
            .update_expression("REMOVE open_shard, webhook_next_at")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        Ok(())
    }
}

/// Items per BatchWriteItem call, DynamoDB's most.
const BATCH_WRITE_ITEMS: usize = 25;

#[async_trait]
impl CarryOverResults for DynamoTable {
    async fn carry_over(&self, carried: &[ImageRecord]) -> Result<(), StoreError> {
        for chunk in carried.chunks(BATCH_WRITE_ITEMS) {
            let mut writes = Vec::with_capacity(chunk.len());
            for image in chunk {
                let mut item = self.item(image, pk(image.request_id), image_sk(image.image_index))?;
                item.insert("updated_at".into(), s(timestamp(Utc::now())));
                if image.state == ImageState::Failed {
                    item.insert("failed_pk".into(), pk(image.request_id));
                }
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| StoreError::Refused { service: "DynamoDB", detail: e.to_string() })?;
                writes.push(WriteRequest::builder().put_request(put).build());
            }
            // DynamoDB may hand part of a batch back when throttled: write that part again.
            let mut attempt = 1;
            while !writes.is_empty() {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, writes)
                    .send()
                    .await
                    .map_err(|e| store_error("DynamoDB", e))?;
                writes = output.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
                if !writes.is_empty() {
                    if attempt == CONFLICT_ATTEMPTS {
                        let detail = "the results to carry over stayed unprocessed".to_string();
                        return Err(StoreError::Unavailable { service: "DynamoDB", detail });
                    }
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RecordResult for DynamoTable {
    async fn record(
        &self,
        job: &ImageJob,
        outcome: &ImageOutcome,
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        match self.write_results(&[(job.clone(), outcome.clone())], now, progress).await? {
            None => Ok(Transition::Applied),
            Some(Cancellation::RequestClosed) => {
                // Its request was cancelled or failed while the job ran: the result is dropped.
                let id = job.request_id;
                tracing::info!(request_id = %id, stage = "result_dropped", image_index = job.image_index);
                Ok(Transition::AlreadyDone)
            }
            Some(_) => Ok(Transition::AlreadyDone),
        }
    }

    async fn record_all(
        &self,
        results: &[(ImageJob, ImageOutcome)],
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        match self.write_results(results, now, progress).await? {
            None => Ok(Transition::Applied),
            Some(_) => Ok(Transition::AlreadyDone),
        }
    }
}

impl DynamoTable {
    /// The result transaction: a `Put` of each image's item, conditional on not existing (its
    /// absence is PENDING), then one update of the request's counters by their sums, conditional
    /// on the request being open. `None` when it was applied; why a condition cancelled it
    /// otherwise (`Duplicate` or `RequestClosed`, nothing written).
    async fn write_results(
        &self,
        results: &[(ImageJob, ImageOutcome)],
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Option<Cancellation>, StoreError> {
        let Some((first, _)) = results.first() else {
            return Ok(None);
        };
        let id = first.request_id;
        let refused =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::Refused { service: "DynamoDB", detail: e.to_string() };
        let mut items = Vec::with_capacity(results.len() + 1);
        for (job, outcome) in results {
            let image = Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.result_item(job, outcome, now)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(refused)?;
            items.push(TransactWriteItem::builder().put(image).build());
        }
        let succeeded = results.iter().filter(|(_, outcome)| outcome.state() == ImageState::Done).count();
        let counts = "ADD remaining :minus_images, succeeded :succeeded, failed :failed";
        // A final request's counts never move again: a job still queued when its request was
        // cancelled or failed records nothing (`Cancellation::RequestClosed`).
        let mut counters = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::request_key(id)))
            .condition_expression("#status IN (:pending, :processing)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(RequestStatus::Pending.as_str()))
            .expression_attribute_values(":processing", s(RequestStatus::Processing.as_str()));
        counters = match progress {
            Progress::Made => counters
                .update_expression(format!("SET updated_at = :now {counts}"))
                .expression_attribute_values(":now", s(timestamp(now))),
            Progress::None => counters.update_expression(counts),
        };
        let counters = counters
            .expression_attribute_values(":minus_images", n(-(results.len() as i64)))
            .expression_attribute_values(":succeeded", n(succeeded))
            .expression_attribute_values(":failed", n(results.len() - succeeded))
            .build()
            .map_err(refused)?;
        items.push(TransactWriteItem::builder().update(counters).build());

        let mut attempt = 1;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let error = match result {
                Ok(output) => {
                    log_write_units(id, results.len(), output.consumed_capacity());
                    return Ok(None);
                }
                Err(error) => error,
            };
            match cancellation(&cancellation_codes(&error)) {
                cancelled @ (Cancellation::Duplicate | Cancellation::RequestClosed) => return Ok(Some(cancelled)),
                Cancellation::Conflict if attempt < CONFLICT_ATTEMPTS => {
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                    attempt += 1;
                }
                Cancellation::Conflict => {
                    let detail = format!("the request's counters stayed busy for {CONFLICT_ATTEMPTS} attempts");
                    return Err(StoreError::Unavailable { service: "DynamoDB", detail });
                }
                Cancellation::Other => return Err(store_error("DynamoDB", error)),
            }
        }
    }
}

/// One line per result transaction with the write units DynamoDB says it consumed (on-demand
/// tables bill them): the pipeline benchmark sums them per image (`tests/src/bin/load.rs`).
fn log_write_units(id: RequestId, images: usize, consumed: &[ConsumedCapacity]) {
    let write_units: f64 = consumed.iter().filter_map(ConsumedCapacity::capacity_units).sum();
    tracing::info!(request_id = %id, stage = "result_write", images, write_units);
}

/// Attempts of one result's transaction while other images' transactions hold the request's
/// item: every image of a request updates that one item, and DynamoDB cancels a transaction
/// that overlaps another on the same item (TransactionConflict). Short, jittered waits sort
/// them out here; the queue's redelivery (seconds) is for when they do not.
const CONFLICT_ATTEMPTS: u32 = 6;

#[derive(Debug, PartialEq, Eq)]
enum Cancellation {
    /// The image item's condition failed: the image already has its result.
    Duplicate,
    /// The request's condition failed: it is final (or gone), and takes no more results.
    RequestClosed,
    /// Another transaction held one of the items: try again.
    Conflict,
    Other,
}

/// The code of each item's cancellation reason of a cancelled transaction, in the order of its
/// items; empty for any other error.
fn cancellation_codes<R>(error: &SdkError<TransactWriteItemsError, R>) -> Vec<Option<&str>> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            cancelled.cancellation_reasons().iter().map(|reason| reason.code()).collect()
        }
        _ => Vec::new(),
    }
}

/// Reads the cancellation reasons of the result transaction (the image Puts first, then the
/// request's counters last), one code per item; empty for any other error.
fn cancellation(reasons: &[Option<&str>]) -> Cancellation {
    let failed = Some("ConditionalCheckFailed");
    let (images, counters) = reasons.split_at(reasons.len().saturating_sub(1));
    if images.contains(&failed) {
        Cancellation::Duplicate
    } else if counters.first() == Some(&failed) {
        Cancellation::RequestClosed
    } else if reasons.contains(&Some("TransactionConflict")) {
        Cancellation::Conflict
    } else {
        Cancellation::Other
    }
}

/// 10-40 ms, then 20-80 ms, ... : random so that the conflicting writers spread out.
fn conflict_backoff(attempt: u32) -> Duration {
    let jitter = getrandom::u32().unwrap_or(0) % 1000;
    Duration::from_micros(u64::from(attempt) * (10_000 + u64::from(jitter) * 30))
}

mod keys;
mod tenancy;
mod uploads;

#[cfg(test)]
mod item_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_image_condition_is_a_duplicate_and_a_busy_item_a_conflict() {
        let duplicate = [Some("ConditionalCheckFailed"), Some("None")];
        assert_eq!(cancellation(&duplicate), Cancellation::Duplicate);
        assert_eq!(cancellation(&[Some("None"), Some("TransactionConflict")]), Cancellation::Conflict);
        assert_eq!(cancellation(&[Some("TransactionConflict"), Some("None")]), Cancellation::Conflict);
        // The request is final or gone (its condition failed): nothing to record, nor to retry.
        assert_eq!(cancellation(&[Some("None"), Some("ConditionalCheckFailed")]), Cancellation::RequestClosed);
        assert_eq!(cancellation(&[]), Cancellation::Other);
    }

    #[test]
    fn conflict_waits_are_short_and_grow() {
        for attempt in 1..CONFLICT_ATTEMPTS {
            let wait = conflict_backoff(attempt);
            assert!(wait >= Duration::from_millis(10 * u64::from(attempt)), "{wait:?}");
            assert!(wait < Duration::from_millis(40 * u64::from(attempt)), "{wait:?}");
        }
    }
}
