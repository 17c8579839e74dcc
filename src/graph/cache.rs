//! The catalog snapshot, kept per session between calls.
//!
//! Reading what the catalog says about the graph's tables (one large query over
//! pg_class, pg_attribute, pg_type, pg_operator, pg_index, ...) costs 3-5 ms, most of a
//! compute that has little to do. A session keeps its last snapshots (one per role and
//! graph, up to `KEPT`) and uses one again while Postgres has sent no invalidation that
//! could change it, as its own relcache does: the snapshots are dropped when one of their
//! tables (or a table its foreign keys point to) is invalidated (ALTER TABLE, GRANT,
//! CREATE INDEX, policies, DROP), when one of their column types is, and on any change to
//! operators, functions, schemas or roles, or a cache reset.
//!
//! A snapshot is read with the latest snapshot of the database, after this session has
//! taken in every invalidation sent so far, and kept only if no invalidation arrived
//! while it was read: Postgres sends a transaction's invalidations after the commit is
//! visible, so what was read is the state as of the invalidations seen, and any later
//! change arrives as an invalidation and drops it. A transaction's own uncommitted DDL
//! is seen the same way (its invalidations are processed locally, and again when it
//! rolls back).
//!
//! Only fully qualified, found tables are kept (the stored graph's, as a compute reads
//! them): where an unqualified name resolves, or whether a missing table now exists,
//! depends on tables being created, which no invalidation of ours reports.

use super::catalog::Lookup;
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};

/// How many snapshots a session keeps (roles times graphs).
const KEPT: usize = 8;

/// Counts every invalidation that may change a kept snapshot.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// One entry per role and graph, the most recent last: the real-time worker computes
    /// each audience as the role that owns it.
    static ENTRIES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    static LOADING: Cell<bool> = const { Cell::new(false) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static HITS: Cell<u64> = const { Cell::new(0) };
}

/// What a snapshot was read for: the tables (schema, name), the role whose privileges
/// it reports, and the search_path type names are printed under.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub tables: Vec<(String, String)>,
    user: pg_sys::Oid,
    search_path: String,
}

impl Key {
    pub fn new(tables: Vec<(String, String)>) -> Key {
        // SAFETY: plain reads of backend state.
        let (user, search_path) = unsafe {
            let sp = pg_sys::namespace_search_path;
            let sp = if sp.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(sp).to_string_lossy().into_owned()
            };
            (pg_sys::GetUserId(), sp)
        };
        Key {
            tables,
            user,
            search_path,
        }
    }

    /// Whether a snapshot for this key may be kept at all.
    pub fn cacheable(&self) -> bool {
        self.tables.iter().all(|(schema, _)| !schema.is_empty())
    }
}

struct Entry {
    key: Key,
    generation: u64,
    /// Tables whose invalidation drops the entry.
    relations: Vec<pg_sys::Oid>,
    /// TYPEOID hash values of the column types (and their base types).
    types: Vec<u32>,
    lookups: Vec<Lookup>,
}

fn bump() {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn generation() -> u64 {
    GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts an invalidation when `all` (a reset), while a snapshot is being read, or when a
/// kept snapshot depends on what it names.
fn invalidated(all: bool, depends: impl Fn(&Entry) -> bool) {
    let ours = all
        || LOADING.with(|l| l.get())
        || ENTRIES.with(|e| match e.try_borrow() {
            Ok(e) => e.iter().any(&depends),
            Err(_) => true,
        });
    if ours {
        bump();
    }
}

unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    invalidated(relid == pg_sys::InvalidOid, |e| {
        e.relations.contains(&relid)
    });
}

unsafe extern "C-unwind" fn on_type(_arg: pg_sys::Datum, _cache: i32, hash: u32) {
    invalidated(hash == 0, |e| e.types.contains(&hash));
}

unsafe extern "C-unwind" fn on_any(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    bump();
}

fn register() {
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    // SAFETY: registering callbacks with static lifetime, once per backend; they only
    // touch this module's thread-locals and never raise.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::TYPEOID as i32,
            Some(on_type),
            pg_sys::Datum::from(0),
        );
        for cache in [
            pg_sys::SysCacheIdentifier::OPEROID,
            pg_sys::SysCacheIdentifier::PROCOID,
            pg_sys::SysCacheIdentifier::NAMESPACEOID,
            pg_sys::SysCacheIdentifier::AUTHOID,
            pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(on_any),
                pg_sys::Datum::from(0),
            );
        }
    }
}

/// The lookups for `key`: the kept ones if nothing they depend on changed since they
/// were read (pending invalidations are taken in first); else read with `read` (given
/// the latest database snapshot) and kept when that is safe: every lookup found, and no
/// invalidation while reading.
pub fn lookups<F>(key: &Key, read: F) -> crate::error::Result<Vec<Lookup>>
where
    F: FnOnce() -> crate::error::Result<Vec<(Lookup, Deps)>>,
{
    let only = |found: Vec<(Lookup, Deps)>| found.into_iter().map(|(l, _)| l).collect();
    if !key.cacheable() {
        return read().map(only);
    }
    register();
    // SAFETY: processing invalidations is what every lock acquisition does.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let before = generation();
    let hit = ENTRIES.with(|e| {
        e.borrow()
            .iter()
            .find(|e| e.generation == before && &e.key == key)
            .map(|e| e.lookups.clone())
    });
    if let Some(kept) = hit {
        HITS.with(|h| h.set(h.get() + 1));
        return Ok(kept);
    }
    let found = {
        let _loading = Loading::start();
        read()?
    };
    let complete = found.iter().all(|(l, _)| matches!(l, Lookup::Found(_)));
    if complete && generation() == before {
        keep(key, before, &found);
    }
    Ok(only(found))
}

/// Keeps `found` for `key`, read at `generation`.
fn keep(key: &Key, generation: u64, found: &[(Lookup, Deps)]) {
    let mut relations = Vec::new();
    let mut types = Vec::new();
    for (_, d) in found {
        relations.extend(d.relations.iter().map(|&o| pg_sys::Oid::from(o)));
        for &t in &d.types {
            // SAFETY: the hash value the TYPEOID cache gives this oid (what its
            // invalidations carry).
            types.push(unsafe {
                pg_sys::GetSysCacheHashValue(
                    pg_sys::SysCacheIdentifier::TYPEOID as i32,
                    pg_sys::Datum::from(t),
                    pg_sys::Datum::from(0),
                    pg_sys::Datum::from(0),
                    pg_sys::Datum::from(0),
                )
            });
        }
    }
    ENTRIES.with(|e| {
        let mut e = e.borrow_mut();
        e.retain(|e| e.generation == generation && &e.key != key);
        if e.len() >= KEPT {
            e.remove(0);
        }
        e.push(Entry {
            key: key.clone(),
            generation,
            relations,
            types,
            lookups: found.iter().map(|(l, _)| l.clone()).collect(),
        });
    });
}

/// While a snapshot is read, every relcache and type invalidation counts (what it will
/// depend on is not known yet); ended also when an error unwinds through the read.
struct Loading;

impl Loading {
    fn start() -> Loading {
        LOADING.with(|l| l.set(true));
        Loading
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        LOADING.with(|l| l.set(false));
    }
}

/// What a table's snapshot depends on, besides operators, functions, schemas and roles.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Deps {
    /// The table and the tables its foreign keys reference.
    #[serde(default)]
    pub relations: Vec<u32>,
    /// Its columns' types and their base types.
    #[serde(default)]
    pub types: Vec<u32>,
}

/// How many times this session used a kept snapshot (for tests).
#[cfg(any(test, feature = "pg_test"))]
pub fn hits() -> u64 {
    HITS.with(|h| h.get())
}
