//! A small runtime for Azure Functions custom handlers, in the spirit of
//! `lambda_runtime`: read the host environment once, decode the payload-mode envelope
//! into typed invocations, and answer in the exact shape the host accepts.
//!
//! It knows nothing about any particular application: register functions on a
//! [`FunctionApp`], turn it into an axum [`Router`](axum::Router), and [`serve`] it on
//! the port from [`HostEnv`].

mod app;
mod env;
mod envelope;
mod invocation;
mod logging;
mod serve;

pub use app::{DEFAULT_BODY_LIMIT, FunctionApp};
pub use env::HostEnv;
pub use envelope::{EnvelopeError, decode_envelope, decode_trigger_value, retry_count};
pub use invocation::{Invocation, InvocationError, InvocationResult};
pub use logging::{LogFormat, init_tracing};
pub use serve::{serve, serve_listener, shutdown_signal};
