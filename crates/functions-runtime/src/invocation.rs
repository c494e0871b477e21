//! The typed invocation a handler receives and the two ways it can answer.

use serde::Serialize;
use serde_json::{Map, Value};

/// One decoded invocation of a payload-mode (non-HTTP-forwarded) function.
#[derive(Debug, Clone)]
pub struct Invocation<T> {
    /// The function name as registered (= the function folder name the host posts to).
    pub function_name: String,
    /// The trigger value with the host's string encoding undone, deserialised into `T`.
    pub data: T,
    /// Trigger metadata; string values have their extra JSON-string layer removed.
    pub metadata: Map<String, Value>,
    /// `X-Azure-Functions-InvocationId`, the id the host uses in its own logs.
    pub invocation_id: Option<String>,
    /// `Metadata.RetryContext.RetryCount`; present only under a host retry policy.
    pub retry_count: Option<u32>,
}

/// The success envelope the host expects: `{"Outputs":{},"Logs":[],"ReturnValue":null}`.
///
/// Every member is always present because the host treats an empty or `null` body as
/// "no result" and then waits for the function timeout.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InvocationResult {
    #[serde(rename = "Outputs")]
    outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    return_value: Option<Value>,
}

impl InvocationResult {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a line the host writes to the invocation log (Application Insights traces),
    /// which is where an operator looking at one invocation will look first.
    pub fn log(&mut self, line: impl Into<String>) -> &mut Self {
        self.logs.push(line.into());
        self
    }

    /// Sets the value for the output binding `name` (must match function.json; the host
    /// ignores unknown names). Beware: the host base64-decodes string outputs that happen
    /// to be valid base64 unless the binding's dataType is binary - prefer objects.
    pub fn output(&mut self, name: &str, value: Value) -> &mut Self {
        self.outputs.insert(name.to_owned(), value);
        self
    }

    /// Sets the value for the `$return` output binding.
    pub fn return_value(&mut self, value: Value) -> &mut Self {
        self.return_value = Some(value);
        self
    }

    pub fn logs(&self) -> &[String] {
        &self.logs
    }

    pub fn outputs(&self) -> &Map<String, Value> {
        &self.outputs
    }

    /// The value set with [`InvocationResult::return_value`], if any.
    pub fn returned(&self) -> Option<&Value> {
        self.return_value.as_ref()
    }
}

/// Why an invocation did not succeed, phrased as what the caller should do next.
///
/// Note for payload-mode triggers: the host turns *any* non-2xx answer into a failed
/// invocation, and the Event Grid extension answers 500 to Event Grid for every failed
/// invocation, so `Rejected` does not stop Event Grid from redelivering. To drop a poison
/// event for good, answer success and say why in the logs.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// Transient: answer 500 so the host fails the invocation and the trigger source
    /// retries (Event Grid redelivers).
    #[error("{0}")]
    Retryable(String),
    /// Terminal bad input: answer the given 4xx status with the message.
    #[error("{message}")]
    Rejected { status: u16, code: String, message: String },
}

impl InvocationError {
    /// The HTTP status to answer. A `Rejected` status outside 400-499 becomes 400: the
    /// variant promises "caller's fault, do not retry", and a 5xx or 2xx would say otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::Retryable(_) => 500,
            Self::Rejected { status, .. } if (400..=499).contains(status) => *status,
            Self::Rejected { .. } => 400,
        }
    }

    /// The machine-readable `error.code` of the response body.
    pub fn code(&self) -> &str {
        match self {
            Self::Retryable(_) => "InvocationFailed",
            Self::Rejected { code, .. } => code,
        }
    }

    pub fn retryable(msg: impl Into<String>) -> Self {
        Self::Retryable(msg.into())
    }

    pub fn rejected(status: u16, code: &str, msg: impl Into<String>) -> Self {
        Self::Rejected {
            status,
            code: code.to_owned(),
            message: msg.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_result_has_all_members() {
        let v = serde_json::to_value(InvocationResult::new()).expect("serialises");
        assert_eq!(v, json!({"Outputs": {}, "Logs": [], "ReturnValue": null}));
    }

    #[test]
    fn error_statuses() {
        assert_eq!(InvocationError::retryable("x").status(), 500);
        assert_eq!(InvocationError::rejected(422, "Bad", "x").status(), 422);
        assert_eq!(InvocationError::rejected(503, "Bad", "x").status(), 400);
        assert_eq!(InvocationError::rejected(200, "Bad", "x").status(), 400);
        assert_eq!(InvocationError::rejected(409, "Conflict", "m").to_string(), "m");
        assert_eq!(InvocationError::rejected(409, "Conflict", "m").code(), "Conflict");
    }
}
