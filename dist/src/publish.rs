//! The collector's side: session events from the capture thread, batched per partition and
//! published to JetStream subjects `NAME.p<k>`, k = hash(session) mod P.
//!
//! [`PublishSink`] is an [`EventSink`] that lives on the capture thread: it encodes and batches
//! (size and time bounds) and hands finished messages to a publisher thread over a channel whose
//! bytes are bounded. When the bound is reached (NATS slow or gone) a live capture drops the
//! message and counts its events per session; an offline reader may wait instead. The publisher
//! thread ([`Publisher`]) keeps a bounded window of unacknowledged publishes, retries what failed
//! in order after a reconnect (JetStream's `Nats-Msg-Id` deduplication and the players' (session,
//! index) check make a retried message harmless), and creates the stream if it is missing. This
//! module does not decode packets or replay anything.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use mrte_capture::event::{CommandRecord, EventSink, Identity, SessionEvent, SessionId};
use serde::{Deserialize, Serialize};

use crate::wire::{self, Batch, Ev, Record};
use crate::DistError;

/// Publisher settings.
#[derive(Clone, Debug)]
pub struct PublishConfig {
    /// NATS server URL(s), comma separated.
    pub url: String,
    /// Stream name; subjects are `NAME.p<k>`.
    pub stream: String,
    /// Partitions.
    pub partitions: u32,
    /// Stream limit in bytes (-1: none); the oldest messages go first.
    pub max_bytes: i64,
    /// Stream retention (zero: keep until max_bytes).
    pub max_age: Duration,
    /// Stream replicas (1, or 3 in a cluster).
    pub replicas: usize,
    /// A batch is sent once it holds this many bytes...
    pub batch_bytes: usize,
    /// ... or once its first event is this old.
    pub batch_delay: Duration,
    /// Most publishes awaiting their acknowledgement.
    pub window: usize,
    /// Most bytes of messages queued or unacknowledged; beyond it messages are dropped (live) or
    /// the capture waits (offline).
    pub buffer_bytes: usize,
}

impl PublishConfig {
    /// Defaults for a stream on `url`.
    pub fn new(url: &str, stream: &str) -> Self {
        Self {
            url: url.to_string(),
            stream: stream.to_string(),
            partitions: 4,
            max_bytes: -1,
            max_age: Duration::ZERO,
            replicas: 1,
            batch_bytes: 256 << 10,
            batch_delay: Duration::from_millis(50),
            window: 64,
            buffer_bytes: 256 << 20,
        }
    }
}

/// Partition of a session: a mix of its id, mod `partitions`.
pub fn partition_of(session: u64, partitions: u32) -> u32 {
    let mut z = session.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % u64::from(partitions.max(1))) as u32
}

/// Subject of partition `k`.
pub fn subject(stream: &str, k: u32) -> String {
    format!("{stream}.p{k}")
}

/// Counters shared by the capture thread, the publisher thread and the live line.
#[derive(Debug, Default)]
pub struct PublishCounters {
    /// Events handed to the sink.
    pub events: AtomicU64,
    /// Commands handed to the sink.
    pub commands: AtomicU64,
    /// Messages acknowledged by the stream.
    pub acked_messages: AtomicU64,
    /// Bytes of those messages.
    pub acked_bytes: AtomicU64,
    /// Commands in acknowledged messages.
    pub acked_commands: AtomicU64,
    /// Publishes retried after a failure.
    pub retries: AtomicU64,
    /// Messages dropped because the buffer was full.
    pub dropped_messages: AtomicU64,
    /// Events in them.
    pub dropped_events: AtomicU64,
    /// Commands in them.
    pub dropped_commands: AtomicU64,
    /// Bytes queued or unacknowledged now.
    pub buffered_bytes: AtomicU64,
    /// Not connected to NATS now.
    pub disconnected: AtomicBool,
    /// Largest message the server takes (its max_payload; 1 MiB until connected).
    pub max_payload: AtomicU64,
    /// Messages dropped because they exceed `max_payload` (a command larger than it).
    pub oversized_messages: AtomicU64,
}

/// What the publisher reports at the end (and stores in the stream's key-value bucket).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishSummary {
    /// Run id (µs since the epoch at start).
    pub origin: u64,
    /// Events published (acknowledged).
    pub events: u64,
    /// Commands captured.
    pub commands: u64,
    /// Commands acknowledged by the stream.
    pub acked_commands: u64,
    /// Messages acknowledged.
    pub acked_messages: u64,
    /// Bytes acknowledged.
    pub acked_bytes: u64,
    /// Publishes retried.
    pub retries: u64,
    /// Messages dropped on a full buffer.
    pub dropped_messages: u64,
    /// Events dropped.
    pub dropped_events: u64,
    /// Commands dropped.
    pub dropped_commands: u64,
    /// Sessions that lost events, with how many (largest first, at most 100).
    pub dropped_by_session: Vec<(u64, u64)>,
    /// Capture counters as JSON (packets, bytes, sessions, commands by name, ...).
    pub capture: String,
}

struct Part {
    records: Vec<Record>,
    bytes: usize,
    since: Option<Instant>,
}

/// A finished message for the publisher thread.
struct Outgoing {
    partition: u32,
    msg_id: String,
    payload: Bytes,
    commands: u64,
}

/// The capture side: an [`EventSink`] that batches per partition.
pub struct PublishSink {
    origin: u64,
    cfg: PublishConfig,
    parts: Vec<Part>,
    /// Per session: index of its next event, and its db/user as its records gave them.
    next_idx: HashMap<SessionId, (u64, Identity)>,
    dropped: HashMap<SessionId, u64>,
    seq: u64,
    tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    counters: Arc<PublishCounters>,
    wait_when_full: bool,
}

impl std::fmt::Debug for PublishSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishSink")
            .field("origin", &self.origin)
            .field("sessions", &self.next_idx.len())
            .finish()
    }
}

impl PublishSink {
    /// Offline readers: wait for buffer space instead of dropping (never on a live capture).
    pub fn set_wait_when_full(&mut self, wait: bool) {
        self.wait_when_full = wait;
    }

    /// Counters.
    pub fn counters(&self) -> Arc<PublishCounters> {
        self.counters.clone()
    }

    /// Send batches older than the time bound; call it now and then when no events come.
    pub fn tick(&mut self) {
        let now = Instant::now();
        for k in 0..self.parts.len() {
            if self.parts[k]
                .since
                .is_some_and(|t| now.duration_since(t) >= self.cfg.batch_delay)
            {
                self.flush(k as u32);
            }
        }
    }

    /// Send every partial batch.
    pub fn flush_all(&mut self) {
        for k in 0..self.parts.len() {
            self.flush(k as u32);
        }
    }

    /// Sessions that lost events so far, largest first.
    pub fn dropped_by_session(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self.dropped.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Send an end-of-capture marker to every partition (players stop after it once nothing
    /// else is pending); waits for buffer space.
    pub fn finish(&mut self) {
        self.flush_all();
        for k in 0..self.cfg.partitions {
            let batch = Batch {
                origin: self.origin,
                records: Vec::new(),
                end: true,
            };
            self.send(k, wire::encode(&batch), &[], 0, true);
        }
    }

    fn flush(&mut self, k: u32) {
        let part = &mut self.parts[k as usize];
        if part.records.is_empty() {
            part.since = None;
            return;
        }
        let records = std::mem::take(&mut part.records);
        part.bytes = 0;
        part.since = None;
        let commands = records.iter().filter(|r| r.event.is_command()).count() as u64;
        let batch = Batch {
            origin: self.origin,
            records,
            end: false,
        };
        let payload = wire::encode(&batch);
        let sessions: Vec<(u64, bool)> = batch
            .records
            .iter()
            .map(|r| (r.session, r.event.is_command()))
            .collect();
        let wait = self.wait_when_full;
        self.send(k, payload, &sessions, commands, wait);
    }

    fn send(
        &mut self,
        k: u32,
        payload: Vec<u8>,
        sessions: &[(u64, bool)],
        commands: u64,
        wait: bool,
    ) {
        let len = payload.len() as u64;
        let c = &self.counters;
        let max = c.max_payload.load(Ordering::Relaxed);
        if max > 0 && len > max {
            // The server would refuse it on every retry: count it as dropped, per session.
            c.oversized_messages.fetch_add(1, Ordering::Relaxed);
            c.dropped_messages.fetch_add(1, Ordering::Relaxed);
            c.dropped_events
                .fetch_add(sessions.len() as u64, Ordering::Relaxed);
            c.dropped_commands.fetch_add(commands, Ordering::Relaxed);
            for (s, _) in sessions {
                *self.dropped.entry(*s).or_default() += 1;
            }
            return;
        }
        loop {
            let used = c.buffered_bytes.load(Ordering::Acquire);
            if used + len <= self.cfg.buffer_bytes as u64 || used == 0 {
                break;
            }
            if !wait || self.tx.is_closed() {
                c.dropped_messages.fetch_add(1, Ordering::Relaxed);
                c.dropped_events
                    .fetch_add(sessions.len() as u64, Ordering::Relaxed);
                c.dropped_commands.fetch_add(commands, Ordering::Relaxed);
                for (s, _) in sessions {
                    *self.dropped.entry(*s).or_default() += 1;
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        c.buffered_bytes.fetch_add(len, Ordering::AcqRel);
        self.seq += 1;
        let out = Outgoing {
            partition: k,
            msg_id: format!("{}-{}", self.origin, self.seq),
            payload: Bytes::from(payload),
            commands,
        };
        if self.tx.send(out).is_err() {
            c.buffered_bytes.fetch_sub(len, Ordering::AcqRel);
            c.dropped_messages.fetch_add(1, Ordering::Relaxed);
            c.dropped_events
                .fetch_add(sessions.len() as u64, Ordering::Relaxed);
            c.dropped_commands.fetch_add(commands, Ordering::Relaxed);
        }
    }
}

impl EventSink for PublishSink {
    fn push(&mut self, id: SessionId, mut event: SessionEvent) {
        let c = &self.counters;
        c.events.fetch_add(1, Ordering::Relaxed);
        let closing = matches!(event, SessionEvent::Close(_));
        if matches!(event, SessionEvent::Command(_)) {
            c.commands.fetch_add(1, Ordering::Relaxed);
        }
        let idx = {
            let (n, ident) = self.next_idx.entry(id).or_default();
            // Records carry db/user only when they change; every message record carries both, so a
            // player resuming mid-session or after a dropped message still knows them.
            if let SessionEvent::Command(rec) = &mut event {
                stamp_identity(ident, rec);
            }
            let i = *n;
            *n += 1;
            i
        };
        if closing {
            self.next_idx.remove(&id);
        }
        let ev = Ev::of(&event);
        let k = partition_of(id, self.cfg.partitions);
        // A large event goes in a message of its own rather than taking a batch down with it.
        let big = ev.approx_len();
        if !self.parts[k as usize].records.is_empty()
            && self.parts[k as usize].bytes + big > self.cfg.batch_bytes
        {
            self.flush(k);
        }
        let part = &mut self.parts[k as usize];
        part.bytes += ev.approx_len();
        part.since.get_or_insert_with(Instant::now);
        part.records.push(Record {
            session: id,
            idx,
            event: ev,
        });
        if part.bytes >= self.cfg.batch_bytes {
            self.flush(k);
        } else if part
            .since
            .is_some_and(|t| t.elapsed() >= self.cfg.batch_delay)
        {
            self.tick();
        }
    }
}

/// Take what `rec` says changed into `ident`, then give `rec` whatever it left out.
fn stamp_identity(ident: &mut Identity, rec: &mut CommandRecord) {
    ident.absorb(rec);
    if rec.db.is_none() {
        rec.db.clone_from(&ident.db);
    }
    if rec.user.is_none() {
        rec.user.clone_from(&ident.user);
    }
}

/// The publisher thread's handle.
pub struct Publisher {
    thread: Option<std::thread::JoinHandle<Result<(), DistError>>>,
    counters: Arc<PublishCounters>,
    stop: Arc<AtomicBool>,
    origin: u64,
    cfg: PublishConfig,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("origin", &self.origin)
            .finish()
    }
}

/// Connect to NATS (retrying in the background when it is down). `url` may list several servers,
/// comma separated (the nodes of a cluster): the client moves to another one when its server goes.
pub async fn connect(url: &str) -> Result<async_nats::Client, DistError> {
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        return Err(DistError::Config("no NATS server URL given".into()));
    }
    async_nats::ConnectOptions::new()
        .name("mrte")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(servers)
        .await
        .map_err(|e| DistError::Nats(e.to_string()))
}

/// Create the stream if it is missing (file storage).
pub async fn ensure_stream(js: &jetstream::Context, cfg: &PublishConfig) -> Result<(), DistError> {
    js.get_or_create_stream(stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.*", cfg.stream)],
        storage: stream::StorageType::File,
        max_bytes: cfg.max_bytes,
        max_age: cfg.max_age,
        num_replicas: cfg.replicas.max(1),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| DistError::Nats(format!("creating stream {}: {e}", cfg.stream)))?;
    Ok(())
}

impl Publisher {
    /// Start the publisher thread; returns it and the sink for the capture thread.
    pub fn start(cfg: PublishConfig) -> Result<(Publisher, PublishSink), DistError> {
        if cfg.partitions == 0 {
            return Err(DistError::Config("--partitions must be at least 1".into()));
        }
        let origin = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let counters = Arc::new(PublishCounters::default());
        counters.disconnected.store(true, Ordering::Relaxed);
        counters.max_payload.store(1 << 20, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DistError::Config(format!("runtime: {e}")))?;
        let (c2, cfg2) = (counters.clone(), cfg.clone());
        let thread = std::thread::Builder::new()
            .name("mrte-publish".into())
            .spawn(move || rt.block_on(publish_loop(cfg2, rx, c2)))
            .map_err(|e| DistError::Config(format!("thread: {e}")))?;
        let sink = PublishSink {
            origin,
            parts: (0..cfg.partitions)
                .map(|_| Part {
                    records: Vec::new(),
                    bytes: 0,
                    since: None,
                })
                .collect(),
            cfg: cfg.clone(),
            next_idx: HashMap::new(),
            dropped: HashMap::new(),
            seq: 0,
            tx,
            counters: counters.clone(),
            wait_when_full: false,
        };
        Ok((
            Publisher {
                thread: Some(thread),
                counters,
                stop,
                origin,
                cfg,
            },
            sink,
        ))
    }

    /// Counters.
    pub fn counters(&self) -> Arc<PublishCounters> {
        self.counters.clone()
    }

    /// Run id.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Wait until everything sent is acknowledged (the sink must be dropped first so the queue
    /// ends), at most `timeout`; then store the summary in the key-value bucket.
    pub fn join(
        mut self,
        timeout: Duration,
        mut summary: PublishSummary,
    ) -> Result<PublishSummary, DistError> {
        let t0 = Instant::now();
        while let Some(t) = &self.thread {
            if t.is_finished() || t0.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Release);
        let c = &self.counters;
        let r = Ordering::Relaxed;
        summary.origin = self.origin;
        summary.acked_messages = c.acked_messages.load(r);
        summary.acked_bytes = c.acked_bytes.load(r);
        summary.acked_commands = c.acked_commands.load(r);
        summary.retries = c.retries.load(r);
        summary.dropped_messages = c.dropped_messages.load(r);
        summary.dropped_events = c.dropped_events.load(r);
        summary.dropped_commands = c.dropped_commands.load(r);
        summary.events = c.events.load(r);
        summary.commands = c.commands.load(r);
        let finished = self.thread.as_ref().is_some_and(|t| t.is_finished());
        if finished {
            if let Some(t) = self.thread.take() {
                t.join()
                    .map_err(|_| DistError::Config("publisher thread panicked".into()))??;
            }
        } else {
            let left = c.buffered_bytes.load(r);
            return Err(DistError::Nats(format!(
                "{left} bytes still unacknowledged after {timeout:?}: is NATS reachable?"
            )));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DistError::Config(format!("runtime: {e}")))?;
        let s2 = summary.clone();
        let cfg = self.cfg.clone();
        rt.block_on(async move {
            let client = connect(&cfg.url).await?;
            let js = jetstream::new(client.clone());
            let kv = crate::state::bucket(&js, &cfg.stream, cfg.replicas).await?;
            let body = serde_json::to_vec(&s2).map_err(|e| DistError::Config(e.to_string()))?;
            crate::state::put_entry(&kv, &format!("publisher.{}", s2.origin), body.into()).await?;
            client
                .flush()
                .await
                .map_err(|e| DistError::Nats(e.to_string()))?;
            Ok::<_, DistError>(())
        })?;
        Ok(summary)
    }
}

async fn publish_loop(
    cfg: PublishConfig,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
    c: Arc<PublishCounters>,
) -> Result<(), DistError> {
    let client = connect(&cfg.url).await?;
    let max = client.server_info().max_payload as u64;
    if max > 0 {
        // Room for the headers and the subject.
        c.max_payload
            .store(max.saturating_sub(512), Ordering::Relaxed);
    }
    let js = jetstream::new(client.clone());
    loop {
        match ensure_stream(&js, &cfg).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("{e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    c.disconnected.store(false, Ordering::Relaxed);
    // Messages sent and not yet acknowledged, in send order; failed ones are resent in order.
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    let mut inflight = futures::stream::FuturesOrdered::new();
    let mut input_done = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        // Fill the window: retries first, then new messages.
        while inflight.len() < cfg.window.max(1) {
            let next = match retry.pop_front() {
                Some(m) => Some(m),
                None if input_done => None,
                None => match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        input_done = true;
                        None
                    }
                },
            };
            let Some(m) = next else { break };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", m.msg_id.as_str());
            let sent = js
                .publish_with_headers(
                    subject(&cfg.stream, m.partition),
                    headers,
                    m.payload.clone(),
                )
                .await;
            inflight.push_back(async move {
                let r = match sent {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (m, r)
            });
        }
        if inflight.is_empty() {
            if input_done && retry.is_empty() {
                break;
            }
            if retry.is_empty() {
                match rx.recv().await {
                    Some(m) => retry.push_back(m),
                    None => input_done = true,
                }
            }
            continue;
        }
        let Some((m, r)) = inflight.next().await else {
            continue;
        };
        match r {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                c.disconnected.store(false, Ordering::Relaxed);
                let len = m.payload.len() as u64;
                c.acked_messages.fetch_add(1, Ordering::Relaxed);
                c.acked_bytes.fetch_add(len, Ordering::Relaxed);
                c.acked_commands.fetch_add(m.commands, Ordering::Relaxed);
                c.buffered_bytes.fetch_sub(len, Ordering::AcqRel);
            }
            Err(e) => {
                if !c.disconnected.swap(true, Ordering::Relaxed) {
                    tracing::warn!("publish failed ({e}); holding messages and retrying");
                }
                c.retries.fetch_add(1, Ordering::Relaxed);
                // Keep order: everything still in flight after it comes back behind it.
                retry.push_back(m);
                while let Some((m2, r2)) = inflight.next().await {
                    match r2 {
                        Ok(()) => {
                            let len = m2.payload.len() as u64;
                            c.acked_messages.fetch_add(1, Ordering::Relaxed);
                            c.acked_bytes.fetch_add(len, Ordering::Relaxed);
                            c.acked_commands.fetch_add(m2.commands, Ordering::Relaxed);
                            c.buffered_bytes.fetch_sub(len, Ordering::AcqRel);
                        }
                        Err(_) => retry.push_back(m2),
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    client
        .flush()
        .await
        .map_err(|e| DistError::Nats(e.to_string()))?;
    Ok(())
}

/// Shared per-session drop table for the report: `(session, events dropped)`.
pub type DropTable = Arc<Mutex<Vec<(u64, u64)>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use mrte_capture::event::Command;

    fn rec(db: Option<&str>, user: Option<&str>) -> CommandRecord {
        CommandRecord {
            seq: 0,
            ts_us: 0,
            command: Command::Ping,
            response: Default::default(),
            db: db.map(Arc::from),
            user: user.map(Arc::from),
            flags: Default::default(),
            raw: Default::default(),
            infile: None,
            commit: Default::default(),
        }
    }

    #[test]
    fn every_published_record_carries_the_sessions_db_and_user() {
        let mut ident = Identity::default();
        let mut first = rec(Some("shop"), Some("app"));
        stamp_identity(&mut ident, &mut first);
        let mut plain = rec(None, None);
        stamp_identity(&mut ident, &mut plain);
        assert_eq!(
            (plain.db.as_deref(), plain.user.as_deref()),
            (Some("shop"), Some("app"))
        );
        let mut changed = rec(Some("crm"), None);
        stamp_identity(&mut ident, &mut changed);
        assert_eq!(
            (changed.db.as_deref(), changed.user.as_deref()),
            (Some("crm"), Some("app"))
        );
        let mut after = rec(None, None);
        stamp_identity(&mut ident, &mut after);
        assert_eq!(after.db.as_deref(), Some("crm"));
    }
}
