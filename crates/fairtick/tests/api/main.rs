//! The HTTP API, driven end to end against the real server on a random port.
//!
//! The suite runs on SQLite by default and on PostgreSQL when `TEST_DATABASE_URL` points at a
//! server (each test gets a fresh database there), so both backends pass the same tests.

mod admin;
mod auth;
mod cli;
mod group_commit;
mod health;
mod helpers;
mod market;
mod migrations;
mod openapi;
mod realtime;
mod trades;
mod wallet;
