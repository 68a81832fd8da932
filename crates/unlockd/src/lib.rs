//! unlockd: a metered contact-unlock server with a Lensmor-compatible external API.
//!
//! Layers: [`http`] parses and maps, [`domain`] decides (pure), [`store`] makes it durable
//! and atomic, [`engine`] works tasks. [`app`] wires them for the CLI and the tests.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod domain;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod signals;
pub mod store;
