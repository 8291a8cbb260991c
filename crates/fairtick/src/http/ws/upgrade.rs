//! The WebSocket handshake (RFC 6455 §4.2), done here rather than by axum's extractor so that
//! the connection's TCP socket can be taken back from hyper: the realtime hub writes frames
//! straight to it.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::http::error::ApiError;

/// A valid request to open a WebSocket.
pub struct WebSocketRequest {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
}

fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers.get(name).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_lists(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|item| item.trim().eq_ignore_ascii_case(token)))
}

fn refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "not_a_websocket_request", message)
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET || parts.version != axum::http::Version::HTTP_11 {
            return Err(refused("a WebSocket opens with an HTTP/1.1 GET"));
        }
        if !header_lists(&parts.headers, header::CONNECTION, "upgrade")
            || !header_is(&parts.headers, header::UPGRADE, "websocket")
        {
            return Err(refused("expected `Connection: upgrade` and `Upgrade: websocket`"));
        }
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(refused("expected `Sec-WebSocket-Version: 13`"));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| refused("expected a `Sec-WebSocket-Key`"))?;
        let accept =
            HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a header value");
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
            ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "not_upgradable",
                "this connection cannot be upgraded",
            )
        })?;
        Ok(WebSocketRequest { on_upgrade, accept })
    }
}

impl WebSocketRequest {
    /// Answers `101 Switching Protocols`; once hyper lets go of the connection, runs `serve`
    /// with its socket and any bytes the client sent after the handshake (copied: they are a
    /// view of hyper's whole read buffer, which would otherwise live as long as the socket).
    pub fn accept<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(TcpStream, Vec<u8>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => return tracing::debug!(%error, "a WebSocket upgrade failed"),
            };
            match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded) {
                Ok(parts) => {
                    // Moved into the block so that hyper's buffer is freed before `serve` runs.
                    let early = {
                        let read_buf = parts.read_buf;
                        read_buf.to_vec()
                    };
                    serve(parts.io.into_inner(), early).await
                }
                Err(_) => tracing::error!("a WebSocket upgrade on a connection that is not a TCP socket"),
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept)
            .body(Body::empty())
            .expect("a valid response")
    }
}
