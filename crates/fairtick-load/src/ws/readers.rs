//! Threads that read every client's socket with one `epoll` set each, instead of a task per
//! client: waking ten thousand tasks a tick, and tungstenite zero-filling a read buffer for each
//! read, were most of this tool's own time, and that time is taken from the server it measures
//! on a two-core machine.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::frames::{self, CLOSE, PING, TEXT};
use crate::report::histogram;

/// What one reader thread measured.
pub struct Tally {
    pub lags: Histogram<u64>,
    /// Connections the server closed (or that failed) while they were read.
    pub closed: u64,
}

/// A reader thread: sockets are handed to it with [`Reader::add`]; it stops when `stop` is set.
pub struct Reader {
    incoming: mpsc::Sender<std::net::TcpStream>,
    waker: Arc<mio::Waker>,
    thread: std::thread::JoinHandle<io::Result<Tally>>,
}

const WAKER: Token = Token(usize::MAX);

impl Reader {
    pub fn start(measuring: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> io::Result<Reader> {
        let poll = Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let (incoming, handed) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ws-reader".into())
            .spawn(move || read_all(poll, &handed, &measuring, &stop))?;
        Ok(Reader { incoming, waker, thread })
    }

    /// Hands over a connected client's socket, its handshake and subscription done.
    pub fn add(&self, socket: std::net::TcpStream) {
        if self.incoming.send(socket).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Waits for the thread (after `stop` was set) and returns what it measured.
    pub fn finish(self) -> io::Result<Tally> {
        let _ = self.waker.wake();
        self.thread.join().map_err(|_| io::Error::other("a reader thread panicked"))?
    }
}

/// One client's socket and the bytes read from it that no whole frame has taken yet.
struct Client {
    socket: TcpStream,
    unread: Vec<u8>,
}

fn read_all(
    mut poll: Poll,
    handed: &mpsc::Receiver<std::net::TcpStream>,
    measuring: &AtomicBool,
    stop: &AtomicBool,
) -> io::Result<Tally> {
    let mut tally = Tally { lags: histogram(), closed: 0 };
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in &events {
            if event.token() == WAKER {
                while let Ok(socket) = handed.try_recv() {
                    socket.set_nonblocking(true)?;
                    let mut socket = TcpStream::from_std(socket);
                    poll.registry().register(&mut socket, Token(clients.len()), Interest::READABLE)?;
                    clients.push(Some(Client { socket, unread: Vec::new() }));
                }
                continue;
            }
            let slot = &mut clients[event.token().0];
            let Some(client) = slot else { continue };
            if !drain(client, &mut buffer, measuring.load(Ordering::Relaxed), &mut tally.lags) {
                let _ = poll.registry().deregister(&mut client.socket);
                *slot = None;
                tally.closed += 1;
            }
        }
    }
    Ok(tally)
}

/// Reads what `client`'s socket holds (edge-triggered: until it is drained) and handles every
/// whole frame. `false` once the connection is over.
fn drain(client: &mut Client, buffer: &mut [u8], measuring: bool, lags: &mut Histogram<u64>) -> bool {
    loop {
        let read = match client.socket.read(buffer) {
            Ok(0) => return false,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        // Kept between reads (it keeps its capacity), so a frame cut by a read is finished by
        // the next one.
        client.unread.extend_from_slice(&buffer[..read]);
        let (open, used) = handle_frames(&mut client.socket, &client.unread, measuring, lags);
        client.unread.drain(..used);
        if !open {
            return false;
        }
        // A read that did not fill the buffer took everything the socket held, and data that
        // arrives after it raises a new edge: a second read would only answer `WouldBlock`, a
        // system call per message for nothing (tokio's readiness makes the same inference).
        if read < buffer.len() {
            return true;
        }
    }
}

/// Handles the whole frames at the start of `bytes`: returns whether the connection stays open,
/// and how many bytes the frames took.
fn handle_frames(
    socket: &mut TcpStream,
    bytes: &[u8],
    measuring: bool,
    lags: &mut Histogram<u64>,
) -> (bool, usize) {
    let mut used = 0;
    loop {
        let (frame, length) = match frames::next(&bytes[used..]) {
            Ok(Some(found)) => found,
            Ok(None) => return (true, used),
            Err(_) => return (false, used),
        };
        used += length;
        match frame.opcode {
            TEXT if measuring => {
                if let Some(lag) = std::str::from_utf8(frame.payload).ok().and_then(super::lag_micros) {
                    let _ = lags.record(lag.max(1));
                }
            }
            // A pong is a few bytes on a socket that sends nothing else: it goes out at once.
            PING if socket.write_all(&frames::pong(frame.payload)).is_err() => return (false, used),
            CLOSE => return (false, used),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::Reader;
    use crate::ws::frames::{encoded, pong};

    /// The reader answers a ping with a pong carrying the same payload, and the server reads it.
    fn ping_and_wait_for_pong(server: &mut std::net::TcpStream, payload: &[u8]) {
        server.write_all(&encoded(Frame::ping(payload.to_vec()))).unwrap();
        let mut answer = vec![0; pong(payload).len()];
        server.read_exact(&mut answer).unwrap();
        assert_eq!(answer, pong(payload));
    }

    #[test]
    fn a_reader_answers_pings_measures_a_price_update_cut_by_the_network_and_counts_a_close() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader::start(Arc::new(AtomicBool::new(true)), stop.clone()).unwrap();
        reader.add(client);
        ping_and_wait_for_pong(&mut server, b"first");

        let ts = (chrono::Utc::now() - chrono::Duration::milliseconds(250))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let update = format!(
            "{{\"type\":\"price_update\",\"data\":{{\"symbol\":\"S\",\"seq\":1,\"ts\":\"{ts}\",\"price\":\"1.0\"}}}}"
        );
        let update = encoded(Frame::message(update.into_bytes(), OpCode::Data(Data::Text), true));
        let (head, tail) = update.split_at(update.len() / 2);
        server.write_all(head).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        server.write_all(tail).unwrap();
        // Frames are handled in order: once this pong is back, the update was measured.
        ping_and_wait_for_pong(&mut server, b"second");

        server.write_all(&encoded(Frame::close(None))).unwrap();
        // The reader drops a closed connection, which the server sees as the end of the stream.
        assert_eq!(server.read(&mut [0; 16]).unwrap(), 0);
        stop.store(true, Ordering::Relaxed);
        let tally = reader.finish().unwrap();
        assert_eq!(tally.lags.len(), 1);
        assert!((250_000..5_000_000).contains(&tally.lags.max()), "{}", tally.lags.max());
        assert_eq!(tally.closed, 1);
    }
}
