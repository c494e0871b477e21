//! Reports checked with real outside components: the SARIF schema from Microsoft's npm package
//! (validated with Ajv under Node.js) and the HTML report opened in headless Chromium.
//!
//! Needs `npm ci --prefix crates/keyguard-report/tests/node` and Debian's `chromium`; without
//! them the tests FAIL with the command to run, they never skip.

#![allow(clippy::unwrap_used)]

mod html_chromium;
mod sample_file;
mod sarif_schema;
mod support;
