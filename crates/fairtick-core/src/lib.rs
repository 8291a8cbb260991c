//! The pure core of fairtick: the rules and the math, with no IO, no async and no database.
//!
//! Everything that decides money or a result lives here so that it can be read, tested and
//! property-checked on its own, and so that the compiler keeps IO out of it (this crate does
//! not depend on tokio, sqlx or axum).
//!
//! # Layout
//!
//! - [`money`]: [`Money`], exact amounts in minor units (cents of VUSD).
//! - [`account`]: who a user is: [`Email`], [`Role`], [`UserStatus`], password rules.
//! - [`ledger`]: double-entry transactions whose postings always sum to zero.
//! - [`wallet`]: the limits on virtual deposits and withdrawals.
//! - [`trade`]: the flash-trade contract: entry, expiry, exit, result, and its transfers.
//! - [`settings`]: the published trading terms and VIP levels.
//! - [`stats`]: a trader's record against break-even (Wilson interval).
//! - [`admin`]: what an admin may change about a user (never a result).
//! - [`price`]: [`Price`], exact prices at scale 8.
//! - [`fairness`]: the provably fair price engine, its independent verifier and the pricing
//!   model (specified in `docs/fairness.md`).
#![forbid(unsafe_code)]

pub mod account;
pub mod admin;
pub mod fairness;
pub mod ledger;
pub mod money;
pub mod price;
pub mod settings;
pub mod stats;
pub mod trade;
pub mod wallet;

pub use account::{Email, Role, UserId, UserStatus};
pub use money::Money;
pub use price::Price;
