//! Reserved uploads (`domain::upload_reservation`): one item in the partition of the request
//! the upload will become, `pk = REQ#<id>`, `sk = UPLOAD`. It carries none of the attributes
//! the indexes and the notifier's stream filter look for, so none of them sees it.

use super::*;
use crate::domain::upload_reservation::{UploadRefusal, UploadReservation};
use crate::ports::UploadReservations;

const UPLOAD_SK: &str = "UPLOAD";

impl DynamoTable {
    fn reservation_key(id: RequestId) -> Item {
        HashMap::from([("pk".into(), pk(id)), ("sk".into(), s(UPLOAD_SK))])
    }

    /// The reservation's item as `reserve` writes it.
    pub(super) fn reservation_item(&self, reservation: &UploadReservation) -> Result<Item, StoreError> {
        self.item(reservation, pk(reservation.request_id), s(UPLOAD_SK))
    }
}

#[async_trait]
impl UploadReservations for DynamoTable {
    async fn reserve(&self, reservation: &UploadReservation) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.reservation_item(reservation)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        Ok(())
    }

    async fn reservation(&self, id: RequestId) -> Result<Option<UploadReservation>, StoreError> {
        let item = self.read_item(Self::reservation_key(id)).await?;
        item.map(|item| serde_dynamo::from_item(item).map_err(corrupt)).transpose()
    }

    async fn refuse_upload(&self, id: RequestId, refusal: &UploadRefusal) -> Result<Transition, StoreError> {
        let value = serde_dynamo::to_attribute_value(refusal).map_err(corrupt)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::reservation_key(id)))
            .update_expression("SET refusal = :refusal")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(refusal) OR refusal = :null)")
            .expression_attribute_values(":refusal", value)
            .expression_attribute_values(":null", AttributeValue::Null(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(Transition::AlreadyDone)
            }
            Err(error) => Err(store_error("DynamoDB", error)),
        }
    }
}
