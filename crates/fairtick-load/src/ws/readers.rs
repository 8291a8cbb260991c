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

/// One client's socket and the start of a frame its last read cut off.
struct Client {
    socket: TcpStream,
    partial: Vec<u8>,
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
                    clients.push(Some(Client { socket, partial: Vec::new() }));
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

/// Reads what `client`'s socket holds (edge-triggered: until it would block) and handles every
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
        let handled = if client.partial.is_empty() {
            let (open, used) = handle_frames(&mut client.socket, &buffer[..read], measuring, lags);
            client.partial.extend_from_slice(&buffer[used..read]);
            open
        } else {
            client.partial.extend_from_slice(&buffer[..read]);
            let bytes = std::mem::take(&mut client.partial);
            let (open, used) = handle_frames(&mut client.socket, &bytes, measuring, lags);
            client.partial.extend_from_slice(&bytes[used..]);
            open
        };
        if !handled {
            return false;
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
