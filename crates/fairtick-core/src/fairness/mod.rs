//! Provably fair markets: the simulated price engine, an independent verifier of its ticks,
//! and the public pricing model used for quotes and early-close bids.
//!
//! The normative description of every algorithm here is `docs/fairness.md`; the code follows
//! it and the tests check the document's vectors, so the two cannot drift apart.
//!
//! - [`market`]: a market's validated parameters and the per-tick volatility they imply.
//! - [`seed`]: an epoch's secret [`Seed`] and its public [`Commitment`].
//! - [`engine`]: the tick generator, one exact integer step per tick.
//! - [`verifier`]: a second, separately written implementation that checks revealed epochs.
//! - [`model`]: fixed-point probabilities of up / down / tie and the figures derived from them.
//!
//! The engine and the verifier share only data types (prices, parameters, the seed), never
//! a function, so a bug in one cannot vouch for itself.

pub mod engine;
mod fixed;
pub mod market;
pub mod model;
pub mod seed;
pub mod verifier;

pub use engine::{EpochSpec, EpochTicks, tick_price};
pub use market::{MarketParams, MarketParamsError, TickSigma};
pub use model::{Direction, Edge, ModelError, OutcomeOdds, Probability, Quote};
pub use seed::{Commitment, Seed, SeedParseError};
pub use verifier::{VerifyError, verify_epoch};
