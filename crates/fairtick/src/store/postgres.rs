//! The PostgreSQL backend, for production and for several nodes sharing one database.
//!
//! `synchronous_commit` stays on (the server default): an acknowledged money movement is on disk.

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::StoreResult;

pub(super) async fn connect(url: &str, options: AnyPoolOptions) -> StoreResult<AnyPool> {
    let native = sqlx::PgPool::connect(url).await?;
    sqlx::migrate!("migrations/postgres").run(&native).await?;
    native.close().await;
    Ok(options.connect(url).await?)
}
