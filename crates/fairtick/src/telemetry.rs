//! Structured logs through `tracing`. `RUST_LOG` filters; `FAIRTICK_LOG_FORMAT=json` switches to
//! one JSON object per line for log collectors.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if std::env::var("FAIRTICK_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second initialisation (tests start many servers in one process) is harmless.
    drop(result);
}
