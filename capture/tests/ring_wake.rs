//! A consumer waiting on [`SessionStream::next`] is woken by every push it waits for: the
//! producer wakes only a consumer that armed its waker, so a lost wake-up would leave it asleep.
//! Here the consumer parks until woken (no polling); a wait that ends by timeout instead of by a
//! wake fails the test.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use mrte_capture::event::{
    CloseReason, EventSink, FlowKey, SessionClose, SessionEvent, SessionOpen,
};
use mrte_capture::ring::RingSink;

struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Poll `f` to completion, parking between polls; panics if a park ends without a wake.
fn block_on<F: Future>(f: F, lost: &mut u32) -> F::Output {
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        unpark.woken.store(false, Ordering::SeqCst);
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let t = Instant::now();
        while !unpark.woken.load(Ordering::SeqCst) {
            if t.elapsed() > Duration::from_secs(2) {
                *lost += 1;
                break;
            }
            std::thread::park_timeout(Duration::from_millis(500));
        }
    }
}

fn ev(ts_us: u64) -> SessionEvent {
    SessionEvent::Close(SessionClose {
        ts_us,
        reason: CloseReason::Fin,
    })
}

#[test]
fn a_waiting_consumer_is_woken_by_each_push() {
    const N: u64 = 3000;
    let (mut sink, rx) = RingSink::new(4096);
    let a: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let b: SocketAddr = "198.18.0.2:3306".parse().unwrap();
    let open = SessionOpen {
        id: 1,
        key: FlowKey {
            client: a,
            server: b,
        },
        ts_us: 0,
        midstream: true,
    };
    sink.push(1, SessionEvent::Open(Box::new(open)));
    let mut stream = rx.recv().expect("a stream for the session");
    let consumer = std::thread::spawn(move || {
        let mut lost = 0;
        let mut got = Vec::new();
        while let Some(e) = block_on(stream.next(), &mut lost) {
            got.push(e);
        }
        (got, lost)
    });
    // Pushes both back to back and after pauses long enough for the consumer to park (the
    // ring holds them all: nothing is dropped).
    for i in 0..N {
        let e = SessionEvent::Login(Box::new(login(i)));
        sink.push(1, e);
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    sink.push(1, ev(N));
    let (got, lost) = consumer.join().expect("consumer");
    assert_eq!(lost, 0, "{lost} waits ended by timeout, not by a wake-up");
    assert_eq!(got.len() as u64, N + 2, "open, every login and the close");
    for (i, e) in got[1..=N as usize].iter().enumerate() {
        match e {
            SessionEvent::Login(l) => assert_eq!(l.ts_us, i as u64),
            other => panic!("event {i} out of order: {other:?}"),
        }
    }
    assert!(matches!(got.last(), Some(SessionEvent::Close(_))));
}

fn login(ts_us: u64) -> mrte_capture::event::Login {
    mrte_capture::event::Login {
        ts_us,
        ok: true,
        ..mrte_capture::event::Login::unknown(true)
    }
}
