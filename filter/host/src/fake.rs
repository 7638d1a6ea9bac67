//! A fake host for native tests: one [`World`] (the Envoy process: shared data with CAS
//! counters, a clock, the calls dispatched, the metrics) seen by several [`FakeHost`]s
//! (the VMs).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::host::{Clock, HttpCalls, MetricKind, SharedData, SharedError, Stats};

/// One call a VM dispatched.
#[derive(Debug, Clone)]
pub struct Call {
    pub vm: usize,
    pub token: u32,
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One metric the process keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub kind: MetricKind,
    pub name: String,
    /// A counter's sum, a gauge's value, a histogram's last sample.
    pub value: i64,
}

/// The process: what every VM shares.
pub struct World {
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Unix seconds; `None` = the clock fails.
    clock: Cell<Option<u64>>,
    next_token: Cell<u32>,
    calls: RefCell<Vec<Call>>,
    /// Shared-data writes that failed on a CAS mismatch.
    pub cas_mismatches: Cell<usize>,
    /// The key of every shared-data read and write, in order (`get ` or `set ` first).
    pub shared_calls: RefCell<Vec<String>>,
    /// Every dispatch fails (the cluster is unknown, say).
    pub dispatch_fails: Cell<bool>,
    /// Clock offset in milliseconds within the current second.
    millis: Cell<u64>,
    /// Before each conditional write: a hook that may write first (contention).
    #[allow(clippy::type_complexity)]
    before_cas_write: RefCell<Option<Box<dyn FnMut(&World, &str)>>>,
    /// The metrics, their id the index.
    metrics: RefCell<Vec<Metric>>,
    /// Calls to `define_metric`, successful or not.
    pub metric_defines: Cell<usize>,
    /// Every `define_metric` fails.
    pub define_fails: Cell<bool>,
}

impl World {
    pub fn new(now: u64) -> Rc<World> {
        let w = World::default();
        w.clock.set(Some(now));
        Rc::new(w)
    }

    pub fn vm(self: &Rc<World>, vm: usize) -> FakeHost {
        FakeHost {
            world: self.clone(),
            vm,
            answer: Rc::new(RefCell::new(None)),
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.get().unwrap_or(0)
    }

    pub fn advance(&self, seconds: u64) {
        self.clock.set(Some(self.now() + seconds));
    }

    /// Moves the clock on by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        let total = self.millis.get() + ms;
        self.advance(total / 1000);
        self.millis.set(total % 1000);
    }

    pub fn fail_clock(&self) {
        self.clock.set(None);
    }

    /// Every call dispatched so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().get(key).map(|(v, _)| v.clone())
    }

    pub fn keys(&self) -> Vec<String> {
        self.shared.borrow().keys().cloned().collect()
    }

    /// Envoy's `SharedData::set`: CAS 0 = no check; a missing key is created whatever the
    /// CAS; every write takes a new CAS.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        let cas = cas.unwrap_or(0);
        if cas != 0 {
            let hook = self.before_cas_write.borrow_mut().take();
            if let Some(mut hook) = hook {
                hook(self, key);
                *self.before_cas_write.borrow_mut() = Some(hook);
            }
        }
        let mut shared = self.shared.borrow_mut();
        if let Some((_, current)) = shared.get(key) {
            if cas != 0 && cas != *current {
                self.cas_mismatches.set(self.cas_mismatches.get() + 1);
                return Err(SharedError::CasMismatch);
            }
        }
        let next = self.next_cas.get() + 1;
        self.next_cas.set(next);
        shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    /// Runs `hook` before every conditional write (until cleared).
    pub fn before_cas_write(&self, hook: impl FnMut(&World, &str) + 'static) {
        *self.before_cas_write.borrow_mut() = Some(Box::new(hook));
    }

    pub fn clear_hook(&self) {
        *self.before_cas_write.borrow_mut() = None;
    }

    /// Every metric defined so far.
    pub fn metrics(&self) -> Vec<Metric> {
        self.metrics.borrow().clone()
    }

    /// The value of the metric `name`, if defined.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .borrow()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// The answer a VM reads during `on_http_call_response`: status and body.
type Answer = Option<(String, Vec<u8>)>;

/// One VM's host.
#[derive(Debug, Clone)]
pub struct FakeHost {
    pub world: Rc<World>,
    vm: usize,
    answer: Rc<RefCell<Answer>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("clock", &self.clock.get())
            .finish()
    }
}

impl Default for World {
    fn default() -> World {
        World {
            shared: RefCell::default(),
            next_cas: Cell::new(0),
            clock: Cell::new(Some(0)),
            next_token: Cell::new(0),
            calls: RefCell::default(),
            cas_mismatches: Cell::new(0),
            shared_calls: RefCell::default(),
            dispatch_fails: Cell::new(false),
            millis: Cell::new(0),
            before_cas_write: RefCell::new(None),
            metrics: RefCell::default(),
            metric_defines: Cell::new(0),
            define_fails: Cell::new(false),
        }
    }
}

impl FakeHost {
    /// The answer the next `call_response` reads (what Envoy holds during
    /// `on_http_call_response`).
    pub fn answer_with(&self, status: &str, body: &[u8]) {
        *self.answer.borrow_mut() = Some((status.to_string(), body.to_vec()));
    }
}

impl SharedData for FakeHost {
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), SharedError> {
        self.world
            .shared_calls
            .borrow_mut()
            .push(format!("get {key}"));
        Ok(match self.world.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        self.world
            .shared_calls
            .borrow_mut()
            .push(format!("set {key}"));
        self.world.set(key, value, cas)
    }
}

impl HttpCalls for FakeHost {
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, String> {
        if self.world.dispatch_fails.get() {
            return Err("fake dispatch failure".to_string());
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let token = self.world.next_token.get() + 1;
        self.world.next_token.set(token);
        self.world.calls.borrow_mut().push(Call {
            vm: self.vm,
            token,
            cluster: cluster.to_string(),
            path: header(":path"),
            authority: header(":authority"),
            method: header(":method"),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.unwrap_or_default().to_vec(),
        });
        Ok(token)
    }

    fn call_response(&self, _body_size: usize, limit: usize) -> (String, Vec<u8>) {
        let (status, mut body) = self.answer.borrow_mut().take().unwrap_or_default();
        body.truncate(limit);
        (status, body)
    }
}

impl Clock for FakeHost {
    fn now(&self) -> Result<Duration, String> {
        self.world
            .clock
            .get()
            .map(|s| Duration::from_secs(s) + Duration::from_millis(self.world.millis.get()))
            .ok_or_else(|| "fake clock failure".to_string())
    }
}

impl Stats for FakeHost {
    /// Envoy's: defining a name again gives the same metric.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, String> {
        let world = &self.world;
        world.metric_defines.set(world.metric_defines.get() + 1);
        if world.define_fails.get() {
            return Err("fake define failure".to_string());
        }
        let mut metrics = world.metrics.borrow_mut();
        let index = match metrics.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                metrics.push(Metric {
                    kind,
                    name: name.to_string(),
                    value: 0,
                });
                metrics.len() - 1
            }
        };
        u32::try_from(index).map_err(|e| e.to_string())
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        let mut metrics = self.world.metrics.borrow_mut();
        let m = &mut metrics[id as usize];
        assert_eq!(m.kind, MetricKind::Counter, "{} incremented", m.name);
        m.value += delta;
    }

    fn record_metric(&self, id: u32, value: u64) {
        let mut metrics = self.world.metrics.borrow_mut();
        let m = &mut metrics[id as usize];
        assert_ne!(m.kind, MetricKind::Counter, "{} recorded", m.name);
        m.value = i64::try_from(value).unwrap_or(i64::MAX);
    }

    fn get_metric(&self, id: u32) -> u64 {
        u64::try_from(self.world.metrics.borrow()[id as usize].value).unwrap_or(0)
    }
}
