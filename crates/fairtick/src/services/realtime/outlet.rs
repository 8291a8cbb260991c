//! One WebSocket connection's way out. Whoever has a frame for the client (the tick fan-out,
//! the event dispatcher, the connection itself) writes it straight to the socket, so a tick
//! reaches ten thousand sockets without waking ten thousand tasks. What the kernel cannot take
//! at once waits here, in order, until the connection's task flushes it as the socket drains;
//! too much waiting, or waiting too long, closes the connection as a slow consumer.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

/// Bytes that may wait for one connection's socket before the client counts as too slow.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;

/// A frame as it goes on the wire, encoded once and shared by every connection sent it.
pub type WireFrame = Bytes;

fn encode(frame: Frame) -> WireFrame {
    let mut wire = Vec::with_capacity(frame.len());
    frame.format(&mut wire).expect("writing to a Vec cannot fail");
    Bytes::from(wire)
}

/// A text message, as the server sends it (unmasked, in one frame).
pub fn text_frame(text: &str) -> WireFrame {
    encode(Frame::message(Bytes::copy_from_slice(text.as_bytes()), OpCode::Data(Data::Text), true))
}

pub fn ping_frame() -> WireFrame {
    encode(Frame::ping(Bytes::new()))
}

pub fn close_frame(code: CloseCode, reason: &'static str) -> WireFrame {
    encode(Frame::close(Some(CloseFrame { code, reason: reason.into() })))
}

pub struct Outlet {
    socket: TcpStream,
    pending: Mutex<Pending>,
    /// Tells the connection's task there is something to flush or a reason to close.
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    frames: VecDeque<WireFrame>,
    bytes: usize,
    /// Since when the oldest pending byte has waited without the socket taking any.
    stalled_since: Option<Instant>,
    closing: Option<&'static str>,
}

impl Outlet {
    pub fn new(socket: TcpStream) -> Arc<Outlet> {
        Arc::new(Outlet { socket, pending: Mutex::default(), wake: Notify::new() })
    }

    /// Writes `frame` now if nothing is waiting before it, else queues it behind what is.
    pub fn send(&self, frame: &WireFrame) {
        let mut pending = self.pending.lock();
        if pending.closing.is_some() {
            return;
        }
        let rest = if pending.frames.is_empty() {
            match self.socket.try_write(frame) {
                Ok(written) if written == frame.len() => return,
                Ok(written) => Ok(frame.slice(written..)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(frame.clone()),
                Err(_) => Err("write failed"),
            }
        } else {
            Ok(frame.clone())
        };
        match rest {
            Ok(rest) if pending.bytes + rest.len() <= MAX_PENDING_BYTES => {
                pending.stalled_since.get_or_insert_with(Instant::now);
                pending.bytes += rest.len();
                pending.frames.push_back(rest);
            }
            Ok(_) => pending.closing = Some("slow consumer"),
            Err(reason) => pending.closing = Some(reason),
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Asks the connection to close with `reason` (the first reason given wins).
    pub fn close(&self, reason: &'static str) {
        self.pending.lock().closing.get_or_insert(reason);
        self.wake.notify_one();
    }

    pub fn closing(&self) -> Option<&'static str> {
        self.pending.lock().closing
    }

    /// When the bytes waiting began to wait, if any do.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.pending.lock().stalled_since
    }

    /// Resolves when something was queued or a close was asked for since the last call.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.socket.writable().await
    }

    /// Writes what the socket takes of the pending bytes: `Ok(true)` when none are left,
    /// `Ok(false)` when the socket is full, an error when it failed.
    pub fn flush(&self) -> io::Result<bool> {
        let mut pending = self.pending.lock();
        while let Some(front) = pending.frames.front_mut() {
            match self.socket.try_write(front) {
                Ok(written) => {
                    pending.bytes -= written;
                    pending.stalled_since = Some(Instant::now());
                    let front = pending.frames.front_mut().expect("still there");
                    if written == front.len() {
                        pending.frames.pop_front();
                    } else {
                        *front = front.slice(written..);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    pending.closing.get_or_insert("write failed");
                    return Err(e);
                }
            }
        }
        pending.stalled_since = None;
        Ok(true)
    }

    /// Waits until nothing is left to write, for at most `within`: `false` if something still
    /// is (or the socket failed).
    pub async fn drained(&self, within: Duration) -> bool {
        let drain = async {
            loop {
                match self.flush() {
                    Ok(true) => return true,
                    Ok(false) if self.writable().await.is_ok() => {}
                    _ => return false,
                }
            }
        };
        tokio::time::timeout(within, drain).await.unwrap_or(false)
    }

    /// Writes a last frame after whatever is pending, regardless of a close already asked for.
    pub fn send_last(&self, frame: &WireFrame) {
        let mut pending = self.pending.lock();
        pending.bytes += frame.len();
        pending.frames.push_back(frame.clone());
    }
}

/// The connection's socket as tungstenite sees it: reads come from the socket, writes (its
/// pongs and close replies) join the same ordered way out as every other frame.
pub struct SocketIo(pub Arc<Outlet>);

impl AsyncRead for SocketIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.socket.poll_read_ready(cx))?;
            match self.0.socket.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SocketIo {
    // tungstenite hands over whole frames and, since every write takes all it is given, never
    // a part of one: its frames cannot interleave with the fan-out's.
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.send(&Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (Arc<Outlet>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Outlet::new(server), client)
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order() {
        let (outlet, mut client) = pair().await;
        for n in 0..100 {
            outlet.send(&text_frame(&format!("message {n}")));
        }
        assert!(outlet.flush().unwrap());
        let mut expected = Vec::new();
        for n in 0..100 {
            expected.extend_from_slice(&text_frame(&format!("message {n}")));
        }
        let mut received = vec![0; expected.len()];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn a_peer_that_never_reads_is_closed_as_a_slow_consumer_not_buffered_without_end() {
        let (outlet, _client) = pair().await;
        let frame = text_frame(&"x".repeat(1_000));
        let mut sent = 0;
        while outlet.closing().is_none() {
            outlet.send(&frame);
            sent += 1;
            assert!(sent < 100_000, "the outlet never gave up");
        }
        assert_eq!(outlet.closing(), Some("slow consumer"));
        assert!(outlet.stalled_since().is_some());
        assert!(outlet.pending.lock().bytes <= MAX_PENDING_BYTES);
    }
}
