//! One test binary (fewer links on a 2-core box) exercising each channel against a real component:
//! aiosmtpd for email, Microsoft's `adaptivecards` parser for the card (and its browser renderer in
//! headless Chromium for screenshots), an axum receiver for HTTP.
//! Missing components make these tests FAIL with the install command, never skip.

#![allow(clippy::unwrap_used)]

mod card;
mod card_render;
mod email;
mod http;
mod support;
