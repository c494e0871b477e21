//! Entity-group transactions (`$batch`): up to 100 inserts into one partition of one table, which
//! the service applies all together or not at all. keyguard uses them where one decision writes
//! several entities that must never be seen apart (the alerts queued for one audit record).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{AzureTableBackend, Body, Call, failure_by_status};
use crate::store::{RowGroup, StoreError, TableBackend, Written};

/// The service's limit on operations in one changeset.
const MAX_ENTITIES: usize = 100;

impl AzureTableBackend {
    /// Inserts the group's rows that do not exist yet (see [`TableBackend::insert_absent`]): all
    /// in one transaction when none exists, as on a first attempt. When one does, an earlier
    /// attempt committed the same rows (a transaction is all or nothing), so each row is then
    /// inserted on its own and what exists is left as it is. Over 100 rows take several
    /// transactions; keyguard's groups are a handful of rows.
    pub(super) async fn insert_group(&self, group: &RowGroup) -> Result<usize, StoreError> {
        let mut new = 0;
        for chunk in group.rows.chunks(MAX_ENTITIES) {
            if let [_, _, ..] = chunk
                && matches!(self.insert_batch(group, chunk).await?, Written::Done { .. })
            {
                new += chunk.len();
                continue;
            }
            for (row, data) in chunk {
                if let Written::Done { .. } = self.insert(group.table, &group.partition, row, data).await? {
                    new += 1;
                }
            }
        }
        Ok(new)
    }

    /// One `$batch` request holding one changeset of inserts. `Conflict`: a row exists, and the
    /// service wrote none of them.
    async fn insert_batch(&self, group: &RowGroup, rows: &[(String, Value)]) -> Result<Written, StoreError> {
        let batch = format!("batch_{}", uuid::Uuid::new_v4());
        let changeset = format!("changeset_{}", uuid::Uuid::new_v4());
        let table_url = format!(
            "{}/{}",
            self.connection.endpoint.as_str().trim_end_matches('/'),
            self.table_name(group.table)
        );
        let mut text = format!("--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n");
        for (row, data) in rows {
            let entity = serde_json::to_string(&Self::entity_body(&group.partition, row, data)?)
                .map_err(StoreError::unwritable)?;
            text.push_str(&format!(
                "--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
                 POST {table_url} HTTP/1.1\r\nContent-Type: application/json\r\n\
                 Accept: application/json;odata=minimalmetadata\r\nPrefer: return-no-content\r\n\
                 DataServiceVersion: 3.0;\r\n\r\n{entity}\r\n"
            ));
        }
        text.push_str(&format!("--{changeset}--\r\n--{batch}--\r\n"));
        let call = Call {
            method: Method::POST,
            path: "$batch".into(),
            query: vec![],
            body: Some(Body::Multipart {
                content_type: format!("multipart/mixed; boundary={batch}"),
                bytes: text.into_bytes(),
            }),
            if_match: None,
        };
        let answer = self.send(&call).await?;
        if answer.status != StatusCode::ACCEPTED {
            return Err(self.failure("entity-group transaction", &answer));
        }
        // Each operation's answer is an HTTP status line inside the multipart answer: all 2xx, or
        // the one that failed the changeset (and with it every other operation).
        let failed = answer
            .text
            .lines()
            .filter_map(|line| line.strip_prefix("HTTP/1.1 "))
            .filter_map(|rest| rest.get(..3)?.parse::<u16>().ok())
            .find(|status| !(200..300).contains(status));
        match failed.map(StatusCode::from_u16) {
            None => Ok(Written::Done { etag: String::new() }),
            Some(Ok(StatusCode::CONFLICT)) => Ok(Written::Conflict),
            Some(Ok(status)) => Err(failure_by_status(
                status,
                format!("table storage entity-group transaction: {status}"),
            )),
            Some(Err(_)) => Err(StoreError::Unavailable(
                "table storage entity-group transaction: an unreadable answer".into(),
            )),
        }
    }
}
