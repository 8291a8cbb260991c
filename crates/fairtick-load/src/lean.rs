//! The client of the measured requests: kept-alive HTTP/1.1 connections of hyper's own, and
//! each user's requests built once. Through reqwest (its layers, URL parsing, JSON encoding
//! per request) this tool took about 35 µs of CPU per trade, a fifth of the machine's work per
//! trade, from the server it measures on a two-core machine; this way, about 19 µs.

use std::sync::Mutex;

use anyhow::Context;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// A request prepared once and sent many times.
pub struct Prepared {
    method: Method,
    path: Uri,
    authorization: Option<HeaderValue>,
    body: Option<Bytes>,
}

impl Prepared {
    pub fn get(path: &str, token: Option<&str>) -> anyhow::Result<Prepared> {
        Prepared::new(Method::GET, path, token, None)
    }

    pub fn post_json(path: &str, token: Option<&str>, body: &serde_json::Value) -> anyhow::Result<Prepared> {
        Prepared::new(Method::POST, path, token, Some(Bytes::from(serde_json::to_vec(body)?)))
    }

    fn new(method: Method, path: &str, token: Option<&str>, body: Option<Bytes>) -> anyhow::Result<Prepared> {
        let authorization = token.map(|t| HeaderValue::from_str(&format!("Bearer {t}"))).transpose()?;
        Ok(Prepared { method, path: path.parse()?, authorization, body })
    }
}

/// Connections to one server, each carrying one request at a time; as many are opened as
/// requests are in flight at once, and kept.
pub struct Client {
    authority: String,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Client {
    /// A client of the server at `url` (`http://HOST:PORT`).
    pub fn new(url: &str) -> anyhow::Result<Client> {
        let uri: Uri = url.parse().with_context(|| format!("--url {url}"))?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "--url must start with http:// ({url})");
        let authority = uri.authority().context("--url names no host")?.to_string();
        Ok(Client { host: HeaderValue::from_str(&authority)?, authority, idle: Mutex::default() })
    }

    /// Sends `prepared` and reads the whole answer; returns its status.
    pub async fn send(&self, prepared: &Prepared) -> anyhow::Result<StatusCode> {
        let idle = self.idle.lock().expect("the idle list is never poisoned").pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let mut request = Request::builder().method(prepared.method.clone()).uri(prepared.path.clone());
        let headers = request.headers_mut().expect("a fresh builder");
        headers.insert(HOST, self.host.clone());
        if let Some(authorization) = &prepared.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        if prepared.body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(Full::new(prepared.body.clone().unwrap_or_default()))?;
        connection.ready().await?;
        let response = connection.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        self.idle.lock().expect("the idle list is never poisoned").push(connection);
        Ok(status)
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads one request (head and `Content-Length` body) from `socket`.
    async fn read_request(socket: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> String {
        loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if pending.len() >= end + 4 + length {
                    let request: Vec<u8> = pending.drain(..end + 4 + length).collect();
                    return String::from_utf8(request).unwrap();
                }
            }
            let mut buffer = [0u8; 4096];
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the client closed the connection");
            pending.extend_from_slice(&buffer[..read]);
        }
    }

    #[tokio::test]
    async fn a_prepared_request_goes_out_as_built_and_its_connection_is_kept_for_the_next() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut pending = Vec::new();
            let mut requests = Vec::new();
            for status in ["201 Created", "422 Unprocessable Entity"] {
                requests.push(read_request(&mut socket, &mut pending).await);
                let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\n{{}}");
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            requests
        });
        let client = Client::new(&url).unwrap();
        let body = serde_json::json!({"symbol": "SIMV25"});
        let create = Prepared::post_json("/api/flash-trade/create", Some("tok"), &body).unwrap();
        assert_eq!(client.send(&create).await.unwrap(), StatusCode::CREATED);
        let balance = Prepared::get("/api/wallet/balance", Some("tok")).unwrap();
        assert_eq!(client.send(&balance).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY);

        // Both arrived on the one connection the server accepted.
        let requests = server.await.unwrap();
        let (create, balance) = (&requests[0], &requests[1]);
        assert!(create.starts_with("POST /api/flash-trade/create HTTP/1.1\r\n"), "{create}");
        let lower = create.to_lowercase();
        assert!(lower.contains("authorization: bearer tok\r\n"), "{create}");
        assert!(lower.contains("content-type: application/json\r\n"), "{create}");
        assert!(create.ends_with("\r\n\r\n{\"symbol\":\"SIMV25\"}"), "{create}");
        assert!(balance.starts_with("GET /api/wallet/balance HTTP/1.1\r\n"), "{balance}");
        assert!(!balance.to_lowercase().contains("content-type"), "{balance}");
    }
}
