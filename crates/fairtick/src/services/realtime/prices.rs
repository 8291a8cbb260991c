//! Who watches each market, and the fan-out of a tick to all of them. A tick is encoded once;
//! the subscribers are split into chunks written by parallel tasks, and a tick's fan-out ends
//! before the next one starts, so every client gets a market's ticks in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::PriceFrame;
use super::outlet::Outlet;

/// Subscribers one fan-out task writes to: enough to be worth a task, few enough that both
/// cores share a tick for a thousand clients.
const CHUNK: usize = 256;
/// Live ticks held for one subscriber while its catch-up is read (ten seconds of a fast market).
const MAX_HELD: usize = 100;

/// One connection watching one market.
pub struct Subscriber {
    id: u64,
    outlet: Arc<Outlet>,
    delivery: Mutex<Delivery>,
}

struct Delivery {
    /// The last seq sent, so a tick is never sent twice or after a newer one.
    last_seq: i64,
    /// Live ticks kept back while a catch-up is sent, `None` when live.
    held: Option<Vec<Arc<PriceFrame>>>,
}

impl Subscriber {
    fn deliver(&self, frame: &Arc<PriceFrame>) {
        let mut delivery = self.delivery.lock();
        if frame.seq <= delivery.last_seq {
            return;
        }
        match &mut delivery.held {
            Some(held) if held.len() < MAX_HELD => held.push(frame.clone()),
            Some(_) => self.outlet.close("slow consumer"),
            None => {
                delivery.last_seq = frame.seq;
                self.outlet.send(&frame.wire);
            }
        }
    }

    /// The seq of the last tick sent (or held back to start after), so that a catch-up reads
    /// only what this subscriber has not had.
    pub fn sent_up_to(&self) -> i64 {
        self.delivery.lock().last_seq
    }

    /// Keeps live ticks back from now on while the ticks after `after` are replayed.
    pub fn hold(&self, after: i64) {
        let mut delivery = self.delivery.lock();
        delivery.last_seq = delivery.last_seq.max(after);
        delivery.held.get_or_insert_with(Vec::new);
    }

    /// Sends a tick read for the catch-up, unless it was sent already.
    pub fn replay(&self, frame: &PriceFrame) {
        let mut delivery = self.delivery.lock();
        if frame.seq > delivery.last_seq {
            delivery.last_seq = frame.seq;
            self.outlet.send(&frame.wire);
        }
    }

    /// Ends the catch-up: sends the live ticks held meanwhile and goes live.
    pub fn release(&self) {
        let mut delivery = self.delivery.lock();
        for frame in delivery.held.take().unwrap_or_default() {
            if frame.seq > delivery.last_seq {
                delivery.last_seq = frame.seq;
                self.outlet.send(&frame.wire);
            }
        }
    }
}

type Subscribers = Arc<Vec<Arc<Subscriber>>>;

/// Each market's subscribers. A fan-out works on a snapshot (a cloned `Arc`), so subscribing
/// copies the list only while a fan-out is running.
#[derive(Default)]
pub struct PriceSubscribers {
    by_market: RwLock<HashMap<Arc<str>, Subscribers>>,
    next_id: AtomicU64,
}

/// A connection's subscription to one market; dropping it unsubscribes.
pub struct Subscription {
    all: Arc<PriceSubscribers>,
    symbol: Arc<str>,
    subscriber: Arc<Subscriber>,
}

impl Subscription {
    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut by_market = self.all.by_market.write();
        if let Some(list) = by_market.get_mut(&self.symbol) {
            let id = self.subscriber.id;
            Arc::make_mut(list).retain(|s| s.id != id);
        }
    }
}

impl PriceSubscribers {
    /// Adds `outlet` to the watchers of `symbol` (the caller checked that the market exists),
    /// held from the start when it is `catching_up_after` a seq (see [`Subscriber::hold`]).
    pub fn subscribe(
        self: &Arc<Self>,
        symbol: &str,
        outlet: Arc<Outlet>,
        catching_up_after: Option<i64>,
    ) -> Subscription {
        let delivery = Delivery {
            last_seq: catching_up_after.unwrap_or(0),
            held: catching_up_after.map(|_| Vec::new()),
        };
        let subscriber = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            outlet,
            delivery: Mutex::new(delivery),
        });
        let symbol: Arc<str> = Arc::from(symbol);
        let mut by_market = self.by_market.write();
        Arc::make_mut(by_market.entry(symbol.clone()).or_default()).push(subscriber.clone());
        Subscription { all: self.clone(), symbol, subscriber }
    }

    /// Writes a tick to every subscriber of its market; returns once all were written to.
    pub async fn publish(&self, frame: Arc<PriceFrame>) {
        let Some(list) = self.by_market.read().get(&frame.symbol).cloned() else { return };
        let mut chunks = tokio::task::JoinSet::new();
        for start in (CHUNK..list.len()).step_by(CHUNK) {
            let (list, frame) = (list.clone(), frame.clone());
            chunks.spawn(async move {
                for subscriber in &list[start..(start + CHUNK).min(list.len())] {
                    subscriber.deliver(&frame);
                }
            });
        }
        for subscriber in &list[..CHUNK.min(list.len())] {
            subscriber.deliver(&frame);
        }
        while chunks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn tick(seq: i64) -> Arc<PriceFrame> {
        let wire = super::super::outlet::text_frame(&format!("tick {seq}"));
        Arc::new(PriceFrame { symbol: Arc::from("M"), seq, wire })
    }

    #[tokio::test]
    async fn a_catch_up_sends_each_tick_once_and_in_order_while_live_ticks_keep_coming() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let outlet = Outlet::new(listener.accept().await.unwrap().0);
        let all = Arc::new(PriceSubscribers::default());
        let subscription = all.subscribe("M", outlet.clone(), Some(3));
        let subscriber = subscription.subscriber();
        // Live ticks 7 and 8 arrive while ticks 2 to 7 are read back from the store.
        all.publish(tick(7)).await;
        all.publish(tick(8)).await;
        for seq in 2..=7 {
            subscriber.replay(&tick(seq));
        }
        subscriber.release();
        all.publish(tick(8)).await;
        all.publish(tick(9)).await;
        let expected: Vec<u8> = [4, 5, 6, 7, 8, 9].iter().flat_map(|&seq| tick(seq).wire.to_vec()).collect();
        let mut received = vec![0; expected.len()];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&received), String::from_utf8_lossy(&expected));
        drop(subscription);
        all.publish(tick(10)).await;
        let mut more = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_millis(100), client.read(&mut more)).await;
        assert!(read.is_err(), "an ended subscription gets no more ticks");
    }
}
