//! One test binary (fewer links on a 2-core box) exercising each channel against a real component:
//! aiosmtpd for email, Microsoft's `adaptivecards` parser for the card, an axum receiver for HTTP.
//! Missing components make these tests FAIL with the install command, never skip.

#![allow(clippy::unwrap_used)]

mod card;
mod email;
mod http;
mod support;
