//! keyguard's pure domain: resource ids, event intake, the resource catalog, profiles and
//! exemptions, `evaluate` and `plan`.
//!
//! Nothing here does I/O, reads the clock or spawns tasks: the handler gathers facts (the live
//! resource body, the time, the last known-good key, recent revert counts) and this crate turns
//! them into decisions. That keeps every decision reproducible in a unit test and lets the same
//! rules serve events, manual checks and the periodic reconcile.

#![forbid(unsafe_code)]

pub mod advice;
pub mod arm_scope;
pub mod catalog;
pub mod config;
pub mod egress;
pub mod estate;
pub mod evaluate;
pub mod event;
pub mod infra;
pub mod inventory;
pub mod keyref;
pub mod keyvault;
pub mod operation;
pub mod outcome;
pub mod plan;
pub mod resource_id;
pub mod routing;
pub mod safeguards;
pub mod vault;

pub use catalog::{
    CatalogEntry, CatalogRow, Direction, EncryptionState, KeyRef, KeyRefError, ResourceView, Reversibility,
    RevertTarget, RevertWrite, catalog_table, entries, lookup, lookup_operation, target_for,
};
pub use config::{
    Config, ConfigError, ConfigProblem, Exemption, ExemptionSource, ExemptionStatus, Mode, Profile, Requirement, Scope,
    Settings,
};
pub use evaluate::{DriftReason, Evaluation, Verdict, evaluate, evaluate_view};
pub use event::{ArmOperation, Caller, EventError, EventKind, IncomingEvent, Schema, parse_delivery, parse_event};
pub use plan::{Action, NoRevertReason, Plan, PlanContext, plan, plan_with, revert_target};
pub use resource_id::{ResourceId, ResourceIdError};

/// A time as RFC 3339, the one spelling keyguard shows people and stores (`2026-12-03T22:41:43Z`).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
pub use routing::{
    AlertFacts, AlertRule, AlertSettings, AlertSeverity, Delivery, Route, RouteKind, SuppressDecision, suppress,
};
