//! fairtick: a practice platform for flash trades on provably fair simulated prices, paid in
//! virtual funds (VUSD). Nobody, not even an admin, can choose a trade's result.
//!
//! # Layout
//!
//! - `fairtick-core` (a separate crate): the pure rules and math. No IO.
//! - [`config`]: typed configuration from flags and the environment, secrets included.
//! - [`store`]: the database, one set of use-case methods over SQLite or PostgreSQL.
//! - [`services`]: what the product does (accounts, wallet), in terms of the core and the store.
//! - [`http`]: thin axum handlers, the error type that owns status codes, extractors, OpenAPI.
//! - [`startup`]: wiring it together and serving on a bound listener until shutdown.
//! - [`verify`]: checking a server's published epochs as an outsider would.
//! - [`cli`]: the `fairtick` command line (serve, user create, audit, verify).
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod http;
pub mod services;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod verify;
