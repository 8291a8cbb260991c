//! The `fairtick` command line: `user create` and `audit`, run as real processes.

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, body};

/// Runs the real binary against the test server's database. Awaited, never blocked on: the
/// server runs on this test's runtime, and blocking it mid-transaction would hold SQLite's write
/// lock for as long as the command waits for it.
async fn fairtick(app: &TestApp, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fairtick"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("FAIRTICK_DATA_DIR", app.data_dir.path())
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fairtick binary runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn user_create_makes_a_superadmin_who_can_log_in() {
    let app = TestApp::spawn().await;
    let output = fairtick(
        &app,
        &["user", "create", "--email", "Root@Example.com", "--role", "superadmin", "--password-stdin"],
        "a long admin password\n",
    )
    .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("created superadmin root@example.com"));

    let login = app.login("root@example.com", "a long admin password").await;
    assert_eq!(login.status(), StatusCode::OK);
    let user = body(login).await["user"].clone();
    assert_eq!(user["role"], "superadmin");
    assert_eq!(user["balance"], "10000.00");

    let again = fairtick(
        &app,
        &["user", "create", "--email", "root@example.com", "--role", "admin", "--password-stdin"],
        "another password\n",
    )
    .await;
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already registered"), "{stderr}");

    let short =
        fairtick(&app, &["user", "create", "--email", "x@example.com", "--password-stdin"], "short\n").await;
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));
}

#[tokio::test]
async fn audit_passes_a_clean_database_and_fails_a_tampered_one() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    app.signed_up("audit@example.com").await;

    let clean = fairtick(&app, &["audit"], "").await;
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stdout));
    assert!(String::from_utf8_lossy(&clean.stdout).contains("OK"));

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE accounts SET balance = balance + 7 WHERE kind = 'cash'")
        .execute(&mut conn)
        .await
        .unwrap();
    let dirty = fairtick(&app, &["audit"], "").await;
    assert!(!dirty.status.success());
    assert!(String::from_utf8_lossy(&dirty.stdout).contains("violation"));
}

#[test]
fn every_command_has_help() {
    for args in [&["--help"][..], &["serve", "--help"], &["user", "create", "--help"], &["audit", "--help"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_fairtick")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Usage:"), "{args:?}: {help}");
    }
    let serve = Command::new(env!("CARGO_BIN_EXE_fairtick")).args(["serve", "--help"]).output().unwrap();
    let serve = String::from_utf8_lossy(&serve.stdout);
    for flag in ["--addr", "FAIRTICK_ADDR", "--data-dir", "FAIRTICK_DATA_DIR", "DATABASE_URL"] {
        assert!(serve.contains(flag), "serve --help does not mention {flag}");
    }
}
