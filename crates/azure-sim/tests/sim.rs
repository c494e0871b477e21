//! Integration tests: every test talks to a real server on 127.0.0.1:0 over HTTP.
//! One test binary (with modules) keeps link time down.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "sim/arm.rs"]
mod arm;
#[path = "sim/binary.rs"]
mod binary;
#[path = "sim/catalog.rs"]
mod catalog;
#[path = "sim/control.rs"]
mod control;
#[path = "sim/delivery.rs"]
mod delivery;
#[path = "sim/faults.rs"]
mod faults;
#[path = "sim/fidelity.rs"]
mod fidelity;
#[path = "sim/keyvault.rs"]
mod keyvault;
#[path = "sim/listing.rs"]
mod listing;
#[path = "sim/msi.rs"]
mod msi;
#[path = "sim/tls.rs"]
mod tls;
#[path = "sim/write_schemas.rs"]
mod write_schemas;
