//! The sandbox: wasmtime, configured so that a tenant's module can compute a
//! decision and do nothing else.
//!
//! What a module gets, by default and on purpose:
//!
//! * **No capabilities.** The linker is empty: no WASI, no host functions. A
//!   module that imports anything but the contract's type-only interface is
//!   refused at load, and the refusal names every such import.
//! * **A fresh instance per decision**, from an [`InstancePre`] made once per
//!   module, in a slot of the pooling allocator, so no state survives from
//!   one decision to the next.
//! * **A fuel budget** (deterministic: the same module and facts use the same
//!   fuel), **an epoch deadline** (a wall-clock backstop; the epoch ticks
//!   only while a decision runs), **memory and table limits** and a
//!   **bounded wasm stack**.
//!
//! [`InstancePre`]: wasmtime::component::InstancePre

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use latchkey_policy::Facts;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};

use crate::policy::bindings::{self, PolicyPre, TYPES_INTERFACE};
use crate::policy::cache::{DiskCache, LoadSource};
use crate::policy::evaluation::{self, Evaluation, Fault};
use crate::policy::{LoadError, ModuleHash};

/// Resource limits for every decision. The defaults are documented on each
/// field; they leave a real policy (a few thousand units of fuel, well under
/// 1 MiB of memory) roughly a thousandfold headroom.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Fuel per decision. Default 10,000,000: a policy decision uses about
    /// 10,000; an endless loop runs out in a few milliseconds.
    pub fuel: u64,
    /// Wall-clock deadline per decision. Default 20 ms.
    pub deadline: Duration,
    /// How often the epoch advances; the deadline is enforced to within one
    /// tick. Default 2 ms.
    pub epoch_tick: Duration,
    /// Linear memory per instance, in bytes. Default 8 MiB.
    pub memory_bytes: usize,
    /// Table elements per table. Default 10,000.
    pub table_elements: usize,
    /// Wasm stack, in bytes. Default 256 KiB.
    pub wasm_stack_bytes: usize,
    /// Decisions that can run at once (pool slots); more wait. Default 64.
    pub concurrent_decisions: u32,
    /// The largest module accepted, in bytes. Default 16 MiB.
    pub max_module_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000,
            deadline: Duration::from_millis(20),
            epoch_tick: Duration::from_millis(2),
            memory_bytes: 8 << 20,
            table_elements: 10_000,
            wasm_stack_bytes: 256 << 10,
            concurrent_decisions: 64,
            max_module_bytes: 16 << 20,
        }
    }
}

/// A module that passed every load check, ready to decide.
pub struct LoadedModule {
    hash: ModuleHash,
    pre: PolicyPre<StoreState>,
    source: LoadSource,
}

impl LoadedModule {
    /// The module's identity.
    pub fn hash(&self) -> ModuleHash {
        self.hash
    }

    /// Where the compiled code came from.
    pub fn source(&self) -> LoadSource {
        self.source
    }
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("hash", &self.hash)
            .field("source", &self.source)
            .finish()
    }
}

/// Per-store state: only the limiter. There is nothing else a module could reach.
struct StoreState {
    limiter: Limiter,
}

/// Enforces memory and table limits, and remembers which one stopped the
/// module, so that the deny can name the cause instead of "trap".
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    hit: Option<Fault>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(Fault::MemoryLimit);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some(Fault::TableLimit);
            return Ok(false);
        }
        Ok(true)
    }
}

/// Bounds concurrent decisions to the pool's slots: the pooling allocator
/// fails instantiation when it is full, so callers wait for a slot instead.
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn take(&self) -> Slot<'_> {
        // A poisoned lock only means another decision panicked while holding
        // it; the count itself is still right.
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// Runs policy modules. Cheap to share: wrap it in an `Arc`.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StoreState>,
    limits: Limits,
    deadline_ticks: u64,
    slots: Slots,
    cache: DiskCache,
    ticker: Arc<Ticker>,
}

/// Why the sandbox itself could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("could not set up the policy sandbox: {0}")]
pub struct SandboxError(String);

impl Sandbox {
    /// A sandbox with these limits, caching compiled modules in `cache`.
    pub fn new(limits: Limits, cache: DiskCache) -> Result<Sandbox, SandboxError> {
        let engine =
            Engine::new(&engine_config(&limits)).map_err(|e| SandboxError(e.to_string()))?;
        let ticker = Arc::new(Ticker::default());
        spawn_epoch_ticker(&engine, limits.epoch_tick, Arc::clone(&ticker));
        let tick = limits.epoch_tick.as_micros().max(1);
        let deadline_ticks = u64::try_from(limits.deadline.as_micros().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(Sandbox {
            // An empty linker: the only thing a module can use is the contract.
            linker: Linker::new(&engine),
            slots: Slots {
                free: Mutex::new(limits.concurrent_decisions.max(1)),
                freed: Condvar::new(),
            },
            engine,
            limits,
            deadline_ticks,
            cache,
            ticker,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks and compiles a module (or takes it from the cache).
    ///
    /// Refused: a module larger than the limit, bytes that are not a valid
    /// component, a component that imports anything outside the contract, or
    /// one that does not export the contract's `evaluate`.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, LoadError> {
        if bytes.len() > self.limits.max_module_bytes {
            return Err(LoadError::TooLarge {
                bytes: bytes.len(),
                limit: self.limits.max_module_bytes,
            });
        }
        let hash = ModuleHash::of(bytes);
        if let Some(loaded) = self.cache.memory(&hash) {
            return Ok(loaded);
        }
        let (component, source) = match self.cache.compiled(&self.engine, &hash) {
            Some(component) => (component, LoadSource::Disk),
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|e| LoadError::InvalidComponent(format!("{e:#}")))?;
                (component, LoadSource::Compiled)
            }
        };
        check_imports(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PolicyPre::new)
            .map_err(|e| LoadError::WrongExports(format!("{e:#}")))?;
        if source == LoadSource::Compiled {
            self.cache.store(&hash, &component);
        }
        self.cache.archive(&hash, bytes);
        let loaded = Arc::new(LoadedModule { hash, pre, source });
        self.cache.remember(Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Decides on `facts` in a fresh instance of `module`.
    ///
    /// Never fails: whatever goes wrong becomes a deny with its [`Fault`].
    pub fn decide(&self, module: &LoadedModule, facts: &Facts) -> Evaluation {
        let wit_facts = bindings::facts_into(facts);
        let _slot = self.slots.take();
        let _ticking = self.ticker.start();
        let started = Instant::now();
        let mut store = Store::new(
            &self.engine,
            StoreState {
                limiter: Limiter {
                    memory_bytes: self.limits.memory_bytes,
                    table_elements: self.limits.table_elements,
                    hit: None,
                },
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.deadline_ticks);
        let result = store.set_fuel(self.limits.fuel).and_then(|()| {
            let instance = module.pre.instantiate(&mut store)?;
            instance.call_evaluate(&mut store, &wit_facts)
        });
        let fuel_used = self
            .limits
            .fuel
            .saturating_sub(store.get_fuel().unwrap_or(0));
        let limit_hit = store.data_mut().limiter.hit.take();
        drop(store);
        let elapsed = started.elapsed();

        let outcome = match result {
            Ok(raw) => {
                let decision = bindings::decision_from(raw);
                evaluation::check(&decision, facts).map(|()| decision)
            }
            Err(error) => Err(classify(&error, limit_hit)),
        };
        match outcome {
            Ok(decision) => Evaluation {
                module: module.hash,
                decision,
                fault: None,
                fuel_used,
                elapsed,
            },
            Err(fault) => {
                tracing::warn!(module = %module.hash, cause = fault.code(), "policy fault: {fault}");
                Evaluation {
                    module: module.hash,
                    decision: fault.to_deny(),
                    fault: Some(fault),
                    fuel_used,
                    elapsed,
                }
            }
        }
    }
}

/// One instance of a module kept across decisions. **For benchmarks only**:
/// it is the floor a fresh sandbox is measured against. Production never
/// reuses an instance ([`Sandbox::decide`] makes a fresh one per decision),
/// because state left by one decision could reach the next.
pub struct WarmInstance<'a> {
    call: Box<WarmCall<'a>>,
}

/// The kept store and instance, behind the one call they answer.
type WarmCall<'a> = dyn FnMut(&Facts) -> Result<latchkey_policy::Decision, Fault> + 'a;

impl WarmInstance<'_> {
    /// Decides on `facts` in the kept instance, with a fresh fuel budget and
    /// deadline. The decision is not checked against the facts.
    pub fn decide(&mut self, facts: &Facts) -> Result<latchkey_policy::Decision, Fault> {
        (self.call)(facts)
    }
}

impl std::fmt::Debug for WarmInstance<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmInstance").finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Instantiates `module` once, to be called again and again. **For
    /// benchmarks only** (see [`WarmInstance`]); it holds one pool slot until
    /// dropped.
    pub fn warm_instance<'a>(&'a self, module: &LoadedModule) -> Result<WarmInstance<'a>, Fault> {
        let slot = self.slots.take();
        let mut store = Store::new(
            &self.engine,
            StoreState {
                limiter: Limiter {
                    memory_bytes: self.limits.memory_bytes,
                    table_elements: self.limits.table_elements,
                    hit: None,
                },
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.deadline_ticks);
        let instance = store
            .set_fuel(self.limits.fuel)
            .and_then(|()| module.pre.instantiate(&mut store))
            .map_err(|e| classify(&e, None))?;
        let (fuel, ticks) = (self.limits.fuel, self.deadline_ticks);
        let ticker = Arc::clone(&self.ticker);
        let call = move |facts: &Facts| {
            let _held = &slot;
            let _ticking = ticker.start();
            store.set_epoch_deadline(ticks);
            store
                .set_fuel(fuel)
                .and_then(|()| instance.call_evaluate(&mut store, &bindings::facts_into(facts)))
                .map(bindings::decision_from)
                .map_err(|e| {
                    let hit = store.data_mut().limiter.hit.take();
                    classify(&e, hit)
                })
        };
        Ok(WarmInstance {
            call: Box::new(call),
        })
    }
}

/// Maps an error from instantiating or calling a module to its cause.
fn classify(error: &wasmtime::Error, limit_hit: Option<Fault>) -> Fault {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Fault::OutOfFuel,
            Trap::Interrupt => Fault::Deadline,
            Trap::StackOverflow => Fault::StackOverflow,
            // A refused memory.grow shows up later as the guest's own trap
            // (its allocator gives up); the limiter knows the real cause.
            other => limit_hit.unwrap_or_else(|| Fault::Trap(other.to_string())),
        };
    }
    if let Some(hit) = limit_hit {
        return hit;
    }
    // Not a trap: lifting the result failed (an invalid discriminant or
    // string), or instantiation failed.
    let text = format!("{error:#}");
    if text.contains("instantiat") {
        Fault::Instantiate(text)
    } else {
        Fault::Malformed(text)
    }
}

/// Refuses a component that imports anything but the contract's types.
fn check_imports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let forbidden: Vec<String> = ty
        .imports(engine)
        .filter(|(name, item)| !is_contract_types(engine, name, &item.ty))
        .map(|(name, _)| name.to_owned())
        .collect();
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(LoadError::ForbiddenImports(forbidden))
    }
}

/// The contract's interface is allowed only as types: an instance with any
/// function in it would be a capability.
fn is_contract_types(engine: &Engine, name: &str, item: &ComponentItem) -> bool {
    match item {
        ComponentItem::ComponentInstance(instance) if name == TYPES_INTERFACE => instance
            .exports(engine)
            .all(|(_, export)| matches!(export.ty, ComponentItem::Type(_))),
        _ => false,
    }
}

/// Bytes of each pool slot's linear memory reset in place rather than decommitted.
const KEEP_RESIDENT_BYTES: usize = 256 << 10;

fn engine_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(limits.wasm_stack_bytes);
    // Determinism, so that replaying a decision gives the same answer.
    config.cranelift_nan_canonicalization(true);
    config.relaxed_simd_deterministic(true);

    let slots = limits.concurrent_decisions.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots);
    // A Rust component is a few core instances (the module, its shims and
    // fixups); allow some headroom.
    pool.max_core_instances_per_component(8);
    pool.total_core_instances(slots * 8);
    pool.max_memories_per_component(2);
    pool.total_memories(slots * 2);
    pool.max_tables_per_component(4);
    pool.total_tables(slots * 4);
    pool.table_elements(limits.table_elements);
    pool.max_memory_size(limits.memory_bytes);
    // Reset the low 256 KiB of a slot's memory with memset and keep it
    // resident, instead of handing it back to the kernel and faulting it in
    // again. A module built by `latchkey policy build` (64 KiB stack, bump
    // allocator) fits in it entirely. Measured on the 2-core machine, fresh
    // decision of the default policy: 64 KiB 13.5 µs, 256 KiB 7.1 µs;
    // PAGEMAP_SCAN instead was 7.7 µs.
    pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
    pool.table_keep_resident(16 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// When the epoch ticker runs: only while a decision does. An idle service
/// then has no timer waking it 500 times a second, and a deadline still
/// counts every tick of its decision (the epoch does not move while nothing
/// runs, and a deadline is set relative to it when its decision starts).
///
/// Starting and ending a decision is an atomic add each; only a decision
/// that finds the thread waiting takes the lock, to wake it.
#[derive(Debug, Default)]
struct Ticker {
    /// Decisions running.
    running: AtomicUsize,
    /// The thread waits for a decision (rather than sleeping out a tick).
    /// Set under `closed`'s lock, then `running` read again, so that a
    /// decision starting meanwhile is seen either way.
    waiting: AtomicBool,
    /// The sandbox is gone: the thread ends.
    closed: Mutex<bool>,
    changed: Condvar,
    /// Ticks so far, for tests.
    ticks: AtomicU64,
}

/// Keeps the ticker going while it lives: one per running decision.
struct Ticking<'a>(&'a Ticker);

impl Ticker {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        // Poisoned only if a holder panicked; the flag is still right.
        self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self) -> Ticking<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            let _closed = self.lock();
            self.changed.notify_one();
        }
        Ticking(self)
    }

    fn close(&self) {
        *self.lock() = true;
        self.changed.notify_one();
    }

    /// Waits until a decision runs; false once the sandbox is gone.
    fn wait_for_work(&self) -> bool {
        let mut closed = self.lock();
        loop {
            if *closed {
                return false;
            }
            if self.running.load(Ordering::SeqCst) > 0 {
                self.waiting.store(false, Ordering::SeqCst);
                return true;
            }
            self.waiting.store(true, Ordering::SeqCst);
            // A decision that started before `waiting` was set is seen here.
            if self.running.load(Ordering::SeqCst) > 0 {
                continue;
            }
            closed = self.changed.wait(closed).unwrap_or_else(|p| p.into_inner());
        }
    }

    #[cfg(test)]
    fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker.close();
    }
}

/// Advances the engine's epoch every `tick` while `ticker` says a decision
/// runs, for as long as the engine and the sandbox live. A tick comes a
/// whole `tick` after the ticker wakes, so a deadline is never cut short.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration, ticker: Arc<Ticker>) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("latchkey-epoch".into())
        .spawn(move || {
            while ticker.wait_for_work() {
                std::thread::sleep(tick);
                let Some(engine) = weak.upgrade() else {
                    return;
                };
                engine.increment_epoch();
                ticker.ticks.fetch_add(1, Ordering::Relaxed);
            }
        });
    if let Err(e) = spawned {
        // Without the ticker the deadline never fires, but fuel still bounds
        // every module; say so loudly rather than refuse to start.
        tracing::error!("could not start the epoch ticker, deadlines are off: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks counted after `wait`.
    fn ticks_after(ticker: &Ticker, wait: Duration) -> u64 {
        let before = ticker.ticks();
        std::thread::sleep(wait);
        ticker.ticks() - before
    }

    #[test]
    fn the_epoch_advances_only_while_a_decision_runs() {
        let sandbox = Sandbox::new(Limits::default(), DiskCache::in_memory()).unwrap();
        let ticker = Arc::clone(&sandbox.ticker);
        let wait = Duration::from_millis(60);
        // Idle: no tick at all (the old ticker made 30 in this time).
        assert_eq!(ticks_after(&ticker, wait), 0);
        {
            let _running = ticker.start();
            // 30 ticks of 2 ms fit; a loaded machine sleeps longer.
            assert!(ticks_after(&ticker, wait) >= 3);
        }
        // At most the tick under way when the decision ended lands.
        assert!(ticks_after(&ticker, wait) <= 1);
        // Gone with the sandbox: the thread ends rather than wait forever.
        drop(sandbox);
        assert!(*ticker.lock());
    }
}
