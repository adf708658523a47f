//! A player: durable JetStream consumers, one per partition, feed the ordinary replay engine.
//!
//! Messages are decoded and their events pushed, in order per session, into the same per-session
//! rings `mrte replay` uses (with backpressure), so the engine and executor are the ones of a
//! single-host run. Every `checkpoint` the player stops pulling, waits until the engine has given
//! every command fed so far a fate (replayed, skipped, lost, failed), stores its report part and
//! every session's position in the key-value bucket, and only then acknowledges the messages
//! (ack-all per partition). A player killed between two checkpoints is restarted from the last
//! one: its counters come back from the bucket, redelivered events at or before a session's
//! position are skipped (counted as duplicates), and sessions open at the checkpoint continue on
//! a new connection (their open and login are replayed from the bucket). Commands replayed after
//! the last checkpoint and before the kill are sent to the target again (they are not in the
//! restored counters, so the report counts each command once); a short `checkpoint` keeps that
//! window small. This module does not decode packets or speak MySQL.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use mrte_capture::event::EventSink;
use mrte_capture::ring::RingSink;
use mrte_replay::compare::Comparison;
use mrte_replay::engine::{EngineStats, LiveCounters};
use mrte_replay::report_merge::Part;

use crate::publish::{connect, subject};
use crate::state::{bucket, PlayerState, SessionMark};
use crate::wire::{self, Ev};
use crate::DistError;

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest message kept.
    FromStart,
    /// Messages stored at or after this time.
    Since(time::OffsetDateTime),
    /// Only messages published from now on.
    New,
}

/// Player settings.
#[derive(Clone, Debug)]
pub struct PlayConfig {
    /// NATS URL(s).
    pub url: String,
    /// Stream.
    pub stream: String,
    /// Partitions this player replays.
    pub partitions: Vec<u32>,
    /// Player name: the durable consumers are `<name>-p<k>`, the bucket key `player.<name>`.
    pub name: String,
    /// Where new consumers start (an existing durable consumer resumes where it stopped).
    pub start: Start,
    /// Time between checkpoints.
    pub checkpoint: Duration,
    /// Keep waiting for new messages after the publisher's end marker.
    pub follow: bool,
    /// Test server, for the stored state (no password).
    pub target: String,
    /// Bucket replicas.
    pub replicas: usize,
    /// Most commands fed to the engine and not yet replayed; a checkpoint waits for them.
    pub max_ahead: u64,
}

/// What a player ends with.
#[derive(Debug)]
pub struct PlayOutcome {
    /// The stored state (all runs).
    pub state: PlayerState,
}

struct Sess {
    local: u64,
    mark: SessionMark,
    /// Open/login pushed to the engine in this run.
    started: bool,
    /// Checkpoint number at which it closed.
    closed_at: Option<u64>,
}

struct Feeder {
    sink: RingSink,
    sessions: HashMap<(u64, u64), Sess>,
    next_local: u64,
    fed: u64,
    duplicates: u64,
    gaps: u64,
    resumed: u64,
    checkpoints: u64,
}

fn placeholder_open() -> Ev {
    let a = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    Ev::Open {
        client: a,
        server: a,
        ts_us: 0,
        midstream: true,
    }
}

impl Feeder {
    fn push(&mut self, origin: u64, r: wire::Record) {
        let key = (origin, r.session);
        if !self.sessions.contains_key(&key) {
            self.next_local += 1;
            self.sessions.insert(
                key,
                Sess {
                    local: self.next_local,
                    mark: SessionMark {
                        origin,
                        session: r.session,
                        next: 0,
                        open: None,
                        login: None,
                        closed: false,
                    },
                    started: false,
                    closed_at: None,
                },
            );
        }
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if r.idx < s.mark.next || s.mark.closed {
            self.duplicates += 1;
            return;
        }
        if r.idx > s.mark.next {
            self.gaps += r.idx - s.mark.next;
        }
        s.mark.next = r.idx + 1;
        if !s.started {
            s.started = true;
            if !matches!(r.event, Ev::Open { .. }) {
                // A session resumed after a restart, or whose open was dropped: open it again
                // (midstream when its open was never seen) and log in as it did.
                let open = s.mark.open.clone().unwrap_or_else(placeholder_open);
                if s.mark.open.is_some() {
                    self.resumed += 1;
                }
                self.sink.push(s.local, open.into_event(s.local));
                if let (Some(l), false) = (&s.mark.login, matches!(r.event, Ev::Login(_))) {
                    self.sink.push(s.local, l.clone().into_event(s.local));
                }
            }
        }
        match &r.event {
            Ev::Open { .. } => s.mark.open = Some(r.event.clone()),
            Ev::Login(_) => s.mark.login = Some(r.event.clone()),
            Ev::Close { .. } => {
                s.mark.closed = true;
                s.closed_at = Some(self.checkpoints);
            }
            Ev::Command(_) => self.fed += 1,
        }
        let local = s.local;
        self.sink.push(local, r.event.into_event(local));
    }

    fn marks(&mut self) -> Vec<SessionMark> {
        // Closed sessions are kept for two checkpoints (their messages are acknowledged by then).
        let now = self.checkpoints;
        self.sessions
            .retain(|_, s| !matches!(s.closed_at, Some(c) if c + 2 <= now));
        self.sessions.values().map(|s| s.mark.clone()).collect()
    }
}

fn done(l: &LiveCounters) -> u64 {
    let s = l.snapshot();
    s.replayed + s.skipped + s.lost + s.failed + l.replayed_no_response.load(Ordering::Relaxed)
}

/// Engine counters as far as the live counters tell (mid-run checkpoints).
fn live_stats(l: &LiveCounters) -> EngineStats {
    let s = l.snapshot();
    let mut e = EngineStats {
        sessions: s.sessions,
        commands_seen: s.commands_seen,
        replayed: s.replayed,
        replayed_no_response: l.replayed_no_response.load(Ordering::Relaxed),
        test_errors: s.test_errors,
        reconnects: s.reconnects,
        ..EngineStats::default()
    };
    for (m, v) in [
        (&mut e.skipped, s.skipped),
        (&mut e.lost, s.lost),
        (&mut e.failed, s.failed),
    ] {
        if v > 0 {
            m.insert("before_restart".into(), v);
        }
    }
    e
}

/// The player's connection to NATS: consumers, the bucket, the state.
pub struct Session {
    cfg: PlayConfig,
    client: async_nats::Client,
    kv: jetstream::kv::Store,
    consumers: Vec<(u32, consumer::PullConsumer)>,
    state: PlayerState,
    started: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.cfg.name)
            .finish()
    }
}

/// Connect, open (or create) the durable consumers, and load the player's last checkpoint.
pub async fn open(cfg: PlayConfig) -> Result<Session, DistError> {
    if cfg.partitions.is_empty() {
        return Err(DistError::Config("--partitions: give at least one".into()));
    }
    let client = connect(&cfg.url).await?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| DistError::Nats(format!("stream {}: {e}", cfg.stream)))?;
    let mut consumers = Vec::new();
    for &k in &cfg.partitions {
        let durable = format!("{}-p{k}", cfg.name);
        let mut deliver_policy = match cfg.start {
            Start::FromStart => consumer::DeliverPolicy::All,
            Start::Since(t) => consumer::DeliverPolicy::ByStartTime { start_time: t },
            Start::New => consumer::DeliverPolicy::New,
        };
        // A consumer left by an earlier run holds the messages it delivered and never saw
        // acknowledged until their ack wait ends: recreate it right after its ack floor so they
        // come again now (the per-session positions skip what was already replayed).
        if let Ok(info) = stream.consumer_info(&durable).await {
            let floor = info.ack_floor.stream_sequence;
            stream
                .delete_consumer(&durable)
                .await
                .map_err(|e| DistError::Nats(format!("resetting consumer {durable}: {e}")))?;
            deliver_policy = if floor == 0 {
                deliver_policy
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: floor + 1,
                }
            };
        }
        let c: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subject(&cfg.stream, k),
                    ack_policy: consumer::AckPolicy::All,
                    deliver_policy,
                    ack_wait: Duration::from_secs(300),
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DistError::Nats(format!("consumer {durable}: {e}")))?;
        consumers.push((k, c));
    }
    let kv = bucket(&js, &cfg.stream, cfg.replicas).await?;
    let key = format!("player.{}", cfg.name);
    let mut state = match crate::state::get_entry(&kv, &key).await? {
        Some(b) => {
            let mut s = PlayerState::decode(&b)?;
            // Fold the interrupted run's part into the base.
            let p = s.part()?;
            s.base = p.encode();
            s.current.clear();
            s
        }
        None => PlayerState::default(),
    };
    state.name = cfg.name.clone();
    state.partitions = cfg.partitions.clone();
    state.target = cfg.target.clone();
    state.runs += 1;
    state.finished = false;
    Ok(Session {
        cfg,
        client,
        kv,
        consumers,
        state,
        started: Instant::now(),
    })
}

impl Session {
    /// Has an earlier run of this player left a checkpoint?
    pub fn resumed(&self) -> bool {
        self.state.runs > 1
    }

    /// Pull messages into `sink` (the engine's rings) until every partition reached the
    /// publisher's end marker (unless `follow`) or `stop` is set; checkpoint on the way. Returns
    /// the feeder's state for [`Session::finish`]. Blocks the calling thread when a ring is full.
    async fn pull(
        &mut self,
        feeder: &mut Feeder,
        live: &LiveCounters,
        cmp: &Mutex<Comparison>,
        stop: &AtomicBool,
    ) -> Result<Vec<(u32, jetstream::Message)>, DistError> {
        let mut streams = Vec::new();
        for (k, c) in &self.consumers {
            let k = *k;
            let m = c
                .messages()
                .await
                .map_err(|e| DistError::Nats(format!("pulling p{k}: {e}")))?;
            streams.push(m.map(move |r| (k, r)).boxed());
        }
        let mut all = futures::stream::select_all(streams);
        // Messages fully fed (acknowledged at the next checkpoint), per partition.
        let mut last: HashMap<u32, jetstream::Message> = HashMap::new();
        let mut ended: HashMap<u32, bool> = HashMap::new();
        // Received and not yet fully fed, per partition: (origin, records left, message).
        type Queued = (u64, VecDeque<wire::Record>, jetstream::Message);
        let mut queues: HashMap<u32, VecDeque<Queued>> = HashMap::new();
        let mut tick = tokio::time::interval(self.cfg.checkpoint);
        tick.tick().await;
        let ahead = self.cfg.max_ahead.max(1);
        loop {
            // Feed while the engine is less than `ahead` commands behind, earliest event first
            // over the partitions (capture order), in order within each.
            loop {
                let mut best: Option<(u64, u32)> = None;
                for (k, q) in queues.iter_mut() {
                    while q.front().is_some_and(|(_, r, _)| r.is_empty()) {
                        if let Some((_, _, m)) = q.pop_front() {
                            last.insert(*k, m);
                        }
                    }
                    if let Some(ts) = q
                        .front()
                        .and_then(|(_, r, _)| r.front())
                        .map(|r| r.event.ts_us())
                    {
                        if !matches!(best, Some((b, _)) if b <= ts) {
                            best = Some((ts, *k));
                        }
                    }
                }
                let Some((_, k)) = best else { break };
                if feeder.fed.saturating_sub(done(live)) >= ahead {
                    break;
                }
                if let Some((origin, records, _)) = queues.get_mut(&k).and_then(|q| q.front_mut()) {
                    if let Some(r) = records.pop_front() {
                        feeder.push(*origin, r);
                    }
                }
            }
            let queued: usize = queues.values().map(VecDeque::len).sum();
            if stop.load(Ordering::Acquire) {
                break;
            }
            if !self.cfg.follow
                && queued == 0
                && self
                    .cfg
                    .partitions
                    .iter()
                    .all(|k| ended.get(k) == Some(&true))
            {
                break;
            }
            let waiting = queued > 0;
            tokio::select! {
                m = all.next(), if queued < 16 => {
                    let Some((k, m)) = m else { break };
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!("pulling p{k}: {e}");
                            continue;
                        }
                    };
                    let pending = m.info().map(|i| i.pending).unwrap_or(1);
                    match wire::decode(&m.payload) {
                        Ok(b) => {
                            ended.insert(k, b.end && pending == 0);
                            queues.entry(k).or_default().push_back((b.origin, b.records.into(), m));
                        }
                        Err(e) => {
                            tracing::warn!("p{k}: a message does not decode ({e}); skipped");
                            ended.insert(k, false);
                            queues.entry(k).or_default().push_back((0, VecDeque::new(), m));
                        }
                    }
                }
                _ = tick.tick() => {
                    self.checkpoint(feeder, live, cmp, &mut last, None).await?;
                }
                _ = tokio::time::sleep(Duration::from_millis(if waiting { 1 } else { 200 })) => {}
            }
        }
        Ok(last.into_iter().collect())
    }

    /// Wait until the engine gave every fed command a fate, store the state, then acknowledge
    /// the messages. `final_eng`: the engine's final counters (end of run).
    async fn checkpoint(
        &mut self,
        feeder: &mut Feeder,
        live: &LiveCounters,
        cmp: &Mutex<Comparison>,
        last: &mut HashMap<u32, jetstream::Message>,
        final_eng: Option<&EngineStats>,
    ) -> Result<bool, DistError> {
        if final_eng.is_none() {
            let t0 = Instant::now();
            while done(live) < feeder.fed {
                if t0.elapsed() > Duration::from_secs(30) {
                    tracing::warn!(
                        "checkpoint skipped: the engine is {} commands behind",
                        feeder.fed - done(live)
                    );
                    return Ok(false);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        feeder.checkpoints += 1;
        let eng = match final_eng {
            Some(e) => e.clone(),
            None => live_stats(live),
        };
        let current = {
            let c = cmp
                .lock()
                .map_err(|_| DistError::Config("comparison lock poisoned".into()))?;
            Part::encode_parts(&c, &eng)
        };
        let s = &mut self.state;
        s.checkpoints += 1;
        s.current = current;
        s.sessions = feeder.marks();
        s.duplicates += feeder.duplicates;
        s.gaps += feeder.gaps;
        s.resumed_sessions += feeder.resumed;
        s.fed_commands += feeder.fed;
        s.elapsed_s += self.started.elapsed().as_secs_f64();
        s.finished = final_eng.is_some();
        let body = s.encode();
        // The per-run counters were added: keep them from being added twice next time.
        let undo = (feeder.duplicates, feeder.gaps, feeder.resumed, feeder.fed);
        let key = format!("player.{}", self.cfg.name);
        let put = self.kv.put(&key, body.into()).await;
        let s = &mut self.state;
        s.duplicates -= undo.0;
        s.gaps -= undo.1;
        s.resumed_sessions -= undo.2;
        s.fed_commands -= undo.3;
        s.elapsed_s -= self.started.elapsed().as_secs_f64();
        if let Err(e) = put {
            tracing::warn!("checkpoint not stored ({e}); messages stay unacknowledged");
            return Ok(false);
        }
        for (k, m) in last.drain() {
            if let Err(e) = m.ack().await {
                tracing::warn!("acknowledging p{k}: {e}");
            }
        }
        Ok(true)
    }
}

/// Run a player: pull from NATS into the engine's rings until the end marker (or `stop`), let
/// the engine drain, store the final state and acknowledge. `engine_run` runs the replay engine
/// on the receiver of new sessions (on the caller's runtime) and returns its final counters.
pub fn run<E>(
    cfg: PlayConfig,
    cmp: Arc<Mutex<Comparison>>,
    live: Arc<LiveCounters>,
    stop: Arc<AtomicBool>,
    engine_run: E,
) -> Result<PlayOutcome, DistError>
where
    E: FnOnce(crossbeam_channel::Receiver<mrte_capture::ring::SessionStream>) -> EngineStats,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DistError::Config(format!("runtime: {e}")))?;
    let mut session = rt.block_on(open(cfg.clone()))?;
    if session.resumed() {
        tracing::info!(
            "player {}: resuming from checkpoint {} ({} sessions known)",
            cfg.name,
            session.state.checkpoints,
            session.state.sessions.len()
        );
    }
    let (mut sink, rx) = RingSink::new(65536);
    sink.set_wait_when_full(true);
    let mut feeder = Feeder {
        sink,
        sessions: HashMap::new(),
        next_local: 0,
        fed: 0,
        duplicates: 0,
        gaps: 0,
        resumed: 0,
        checkpoints: 0,
    };
    for m in std::mem::take(&mut session.state.sessions) {
        if m.closed {
            // Kept only to recognise redelivered events.
            feeder.sessions.insert(
                (m.origin, m.session),
                Sess {
                    local: 0,
                    mark: m,
                    started: true,
                    closed_at: Some(0),
                },
            );
            continue;
        }
        feeder.next_local += 1;
        feeder.sessions.insert(
            (m.origin, m.session),
            Sess {
                local: feeder.next_local,
                mark: m,
                started: false,
                closed_at: None,
            },
        );
    }
    // The puller runs on its own thread (it may block on a full ring); the engine on this one.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<EngineStats>();
    let (cmp2, live2, stop2) = (cmp.clone(), live.clone(), stop.clone());
    let puller = std::thread::Builder::new()
        .name("mrte-play-pull".into())
        .spawn(move || -> Result<PlayerState, DistError> {
            rt.block_on(async move {
                let r = session.pull(&mut feeder, &live2, &cmp2, &stop2).await;
                // Close the rings: the engine ends once it has replayed what was fed.
                feeder.sink.close_all();
                let mut last: HashMap<u32, jetstream::Message> = match r {
                    Ok(l) => l.into_iter().collect(),
                    Err(e) => {
                        drop(feeder.sink);
                        return Err(e);
                    }
                };
                let Feeder {
                    sink,
                    sessions,
                    next_local,
                    fed,
                    duplicates,
                    gaps,
                    resumed,
                    checkpoints,
                } = feeder;
                drop(sink);
                let (s2, _) = RingSink::new(1);
                let mut feeder = Feeder {
                    sink: s2,
                    sessions,
                    next_local,
                    fed,
                    duplicates,
                    gaps,
                    resumed,
                    checkpoints,
                };
                let eng = tokio::task::spawn_blocking(move || done_rx.recv())
                    .await
                    .map_err(|e| DistError::Config(e.to_string()))?
                    .map_err(|_| DistError::Config("the engine ended without counters".into()))?;
                // Commands the engine did not finish (none unless it was stopped) are not acked
                // past: their messages come again to the next run.
                let complete = eng.accounted() >= fed;
                if complete {
                    session
                        .checkpoint(&mut feeder, &live2, &cmp2, &mut last, Some(&eng))
                        .await?;
                } else {
                    tracing::warn!(
                        "{} commands were not replayed; they are left for the next run",
                        fed - eng.accounted()
                    );
                }
                session.client.flush().await.ok();
                let mut st = session.state.clone();
                st.duplicates += feeder.duplicates;
                st.gaps += feeder.gaps;
                st.resumed_sessions += feeder.resumed;
                st.fed_commands += feeder.fed;
                Ok(st)
            })
        })
        .map_err(|e| DistError::Config(format!("thread: {e}")))?;
    let eng = engine_run(rx);
    let _ = done_tx.send(eng);
    let state = puller
        .join()
        .map_err(|_| DistError::Config("puller thread panicked".into()))??;
    Ok(PlayOutcome { state })
}
