//! The background threads that keep a cache of what the engine says about
//! containers: one follows the engine's events, one inspects the ids user
//! space asks about. User space only ever reads the cache.

use std::collections::HashMap;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use super::engine::{self, EngineError, Event, Info};

/// More containers than any host runs; bounds what a hostile engine can add.
const MAX_CONTAINERS: usize = 4096;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

const ENGINE_UNKNOWN: u8 = 0;
const ENGINE_UP: u8 = 1;
const ENGINE_DOWN: u8 = 2;

pub struct Shared {
    cache: RwLock<HashMap<String, Arc<Info>>>,
    /// Bumped after every change to the cache or the engine's state, so
    /// user space knows when what it derived from them is stale.
    generation: AtomicU64,
    engine: AtomicU8,
    stop: AtomicBool,
    /// The events connection, which blocks in reads: shut down to stop.
    events: Mutex<Option<UnixStream>>,
}

impl Shared {
    pub fn info(&self, id: &str) -> Option<Arc<Info>> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Not reachable now: waiting for it would be waiting for nothing.
    pub fn engine_down(&self) -> bool {
        self.engine.load(Ordering::Acquire) == ENGINE_DOWN
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn put(&self, entries: impl IntoIterator<Item = (String, Info)>, overwrite: bool) {
        {
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            for (id, info) in entries {
                if !overwrite && cache.contains_key(&id) {
                    continue;
                }
                if cache.len() >= MAX_CONTAINERS && !cache.contains_key(&id) {
                    // any one: only a host with thousands of containers gets here
                    if let Some(evicted) = cache.keys().next().cloned() {
                        cache.remove(&evicted);
                    }
                }
                cache.insert(id, Arc::new(info));
            }
        }
        self.changed();
    }

    fn remove(&self, id: &str) {
        self.cache.write().unwrap_or_else(PoisonError::into_inner).remove(id);
        self.changed();
    }

    fn set_engine(&self, state: u8) {
        if self.engine.swap(state, Ordering::AcqRel) != state {
            self.changed();
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(stream) = self.events.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sleeps, but wakes up to stop; false when stopping.
    fn pause(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(Duration::from_millis(50)));
        }
        false
    }
}

/// Starts the threads; ids sent on the returned channel get inspected.
pub fn spawn(socket: Option<PathBuf>) -> std::io::Result<(Arc<Shared>, Sender<String>)> {
    let shared = Arc::new(Shared {
        cache: RwLock::new(HashMap::new()),
        generation: AtomicU64::new(0),
        engine: AtomicU8::new(ENGINE_UNKNOWN),
        stop: AtomicBool::new(false),
        events: Mutex::new(None),
    });
    let (requests, received) = mpsc::channel();
    let (follower, socket_) = (Arc::clone(&shared), socket.clone());
    thread::Builder::new().name("containers".into()).spawn(move || follow_engine(&follower, socket_))?;
    let inspector = Arc::clone(&shared);
    thread::Builder::new()
        .name("inspect".into())
        .spawn(move || inspect_asked(&inspector, socket, received))?;
    Ok((shared, requests))
}

fn socket_path(socket: &Option<PathBuf>) -> PathBuf {
    // looked for on each connection: dockerd may start after sockdump
    socket.clone().unwrap_or_else(engine::default_socket)
}

/// Lists the containers then follows events, for as long as the engine
/// lets it; reconnects with backoff while it is absent.
fn follow_engine(shared: &Shared, socket: Option<PathBuf>) {
    let mut backoff = FIRST_BACKOFF;
    while !shared.stopping() {
        // errors are the engine being absent, restarted or odd: retrying is all there is to do
        let _ = follow(shared, &socket_path(&socket));
        let answered = shared.engine.load(Ordering::Acquire) == ENGINE_UP;
        shared.set_engine(ENGINE_DOWN);
        backoff = if answered { FIRST_BACKOFF } else { (backoff * 2).min(MAX_BACKOFF) };
        if !shared.pause(backoff) {
            return;
        }
    }
}

fn follow(shared: &Shared, socket: &Path) -> Result<(), EngineError> {
    let stream = super::http::connect_unix(socket)?;
    *shared.events.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream.try_clone()?);
    // after storing it, so that stop() either sees the stream or is seen here
    if shared.stopping() {
        return Ok(());
    }
    // subscribed before listing: no container created in between is missed
    let mut events = engine::events(stream)?;
    shared.put(engine::containers(socket)?, true);
    shared.set_engine(ENGINE_UP);
    while let Some(event) = events.next()? {
        match event {
            Event::Changed(id, info) => shared.put([(id, info)], true),
            Event::Destroyed(id) => shared.remove(&id),
        }
    }
    Ok(())
}

fn inspect_asked(shared: &Shared, socket: Option<PathBuf>, asked: Receiver<String>) {
    // ends when the Containers that asks is dropped
    for id in asked {
        if shared.stopping() {
            return;
        }
        if shared.info(&id).is_some() {
            continue;
        }
        match engine::inspect(&socket_path(&socket), &id) {
            Ok(Some(info)) => shared.put([(id, info)], true),
            // unknown to the engine, or the engine is gone: the answer is that
            // there is no name, unless an event has told one meanwhile
            Ok(None) | Err(_) => shared.put([(id, Info::default())], false),
        }
    }
}
