//! What can go wrong with the state store, by what a caller can do about it. The event path fails
//! an invocation (so that Event Grid redelivers) only for an error that a later attempt may not
//! meet again: a store that is down, yes; a stored row that does not read, never.

/// A state store failure. Each variant carries what failed, for the log (never a key or secret).
/// `Clone`: one failed group commit is every write's answer in it (see `embedded/group_commit.rs`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer or failed on its side: unreachable, timed out, Table Storage's
    /// 5xx, 408 or 429 after the backend's own retries, a redb I/O error. A later attempt may
    /// succeed.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// A conditional write kept losing to other writers (an ETag that changed, a 412) and the
    /// store gave up settling it. A later attempt reads afresh and decides again.
    #[error("state store conflict: {0}")]
    Conflict(String),
    /// What is stored is not what keyguard writes: a row that does not deserialize, a damaged or
    /// foreign redb file, or a value that cannot be written as JSON. Reading it again gives the
    /// same bytes, so retrying cannot help; a person (or the next write of the row) must.
    #[error("state store data is unreadable: {0}")]
    Corrupt(String),
    /// The store refused the request itself: its credential (401, 403, a refused token), a request
    /// it never accepts (400, a table that is gone, an entity over Table Storage's limits), or the
    /// egress policy refused the endpoint. The same request gets the same answer until a person
    /// changes the configuration.
    #[error("state store refused the request: {0}")]
    Refused(String),
}

impl StoreError {
    /// Whether the same call, made again later, may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Conflict(_) => true,
            StoreError::Corrupt(_) | StoreError::Refused(_) => false,
        }
    }

    /// A value keyguard could not turn into JSON: a bug in what is stored, not a passing failure.
    pub(crate) fn unwritable(error: serde_json::Error) -> Self {
        StoreError::Corrupt(format!("a value cannot be written as JSON: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_store_that_may_answer_later_is_worth_retrying() {
        assert!(StoreError::Unavailable("timed out".into()).retryable());
        assert!(StoreError::Conflict("412".into()).retryable());
        assert!(!StoreError::Corrupt("not JSON".into()).retryable());
        assert!(!StoreError::Refused("403".into()).retryable());
    }
}
