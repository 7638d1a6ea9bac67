//! The guard on the registry's route against the host (docs/GUARD.md): the decisions of
//! `registry-token-core`'s [`handler::guard`] with this VM's clock, revocation list, crypto
//! and token memo, every refusal audited into the ledger's buffer; and [`GuardStream`],
//! what the stream context does at each end of a guarded request:
//!
//! - a request that passes continues at once, with the identity headers set (and any the
//!   client sent removed, always);
//! - an immutable tag's `PUT` waits for its manifest (never more than
//!   [`MAX_MANIFEST_BYTES`]), asks the registry `HEAD` through `guard.registryCluster`,
//!   and then continues or is refused;
//! - a `GET /v2/_catalog` answered 200 has its body buffered (never more than
//!   [`MAX_CATALOG_BYTES`]) and cut to the caller's repositories; every other answer, and
//!   every blob, streams through untouched.
//!
//! A request the guard refused is held: nothing of it reaches the registry.

use std::time::Duration;

use registry_token_core::guard::catalog::MAX_CATALOG_BYTES;
use registry_token_core::handler::guard::{
    self, GuardContext, GuardStep, GuardView, HeadAnswer, ImmutableCheck, Pass, Verified,
    MAX_MANIFEST_BYTES,
};
use registry_token_core::handler::{
    self, Audit, Decision, Denial, PeerCertificate, Reason, RequestView,
};

use crate::host::Host;
use crate::state::{Recorded, State};

/// A guard decision and whether its refusal reached the ledger's buffer.
pub type Audited<T> = (T, Recorded);

impl<H: Host> State<H> {
    fn guard_ctx<R>(&self, f: impl FnOnce(&GuardContext<'_>) -> R) -> Result<R, Box<Decision>> {
        let Some(guard) = self.config.guard.as_ref() else {
            return Err(self.clock_refusal("the guard is not configured"));
        };
        let now = self.host().now_unix().map_err(|why| {
            log::error!("registry-token-filter: refusing a registry request: {why}");
            self.clock_refusal("the proxy could not read its clock; retry later")
        })?;
        Ok(self.with_revocation(now, |revocation| {
            f(&GuardContext {
                config: &self.config,
                guard,
                crypto: self.crypto(),
                now,
                revocation,
                memo: &self.guard_memo,
            })
        }))
    }

    fn clock_refusal(&self, detail: &str) -> Box<Decision> {
        Box::new(handler::deny(
            &self.config,
            Denial::new(Reason::ClockUnavailable, detail.to_owned()),
            Some(Audit::new(0)),
        ))
    }

    /// Audits a refusal (id, gateway, the ledger's buffer).
    fn recorded(
        &self,
        mut d: Box<Decision>,
        id_source: &GuardView<'_>,
    ) -> (Box<Decision>, Recorded) {
        let view = RequestView {
            method: id_source.method,
            path: id_source.path,
            headers: &[],
            peer_certificate: PeerCertificate::Known(None),
            body: None,
        };
        let recorded = match d.audit.as_mut() {
            Some(a) => self.record_refusal(a, &view),
            None => Recorded::NotConfigured,
        };
        (d, recorded)
    }

    /// Decides a request on the registry's route.
    pub fn guard(&self, view: &GuardView<'_>) -> Audited<GuardStep> {
        let step = match self.guard_ctx(|ctx| guard::guard(view, ctx)) {
            Ok(step) => step,
            Err(d) => GuardStep::Refuse(d),
        };
        match step {
            GuardStep::Refuse(d) => {
                let (d, r) = self.recorded(d, view);
                (GuardStep::Refuse(d), r)
            }
            other => (other, Recorded::NotConfigured),
        }
    }

    /// Decides a waiting immutable-tag `PUT` (see [`guard::immutable`]).
    pub fn guard_immutable(
        &self,
        check: &ImmutableCheck,
        manifest: Option<&[u8]>,
        head: HeadAnswer<'_>,
        view: &GuardView<'_>,
    ) -> Audited<Result<Pass, Box<Decision>>> {
        match self
            .guard_ctx(|ctx| guard::immutable(check, manifest, head, ctx))
            .and_then(|r| r)
        {
            Ok(pass) => (Ok(pass), Recorded::NotConfigured),
            Err(d) => {
                let (d, r) = self.recorded(d, view);
                (Err(d), r)
            }
        }
    }

    /// Cuts a `_catalog` answer (see [`guard::catalog_body`]).
    pub fn guard_catalog(
        &self,
        body: Option<&[u8]>,
        caller: &Verified,
        view: &GuardView<'_>,
    ) -> Audited<Result<Vec<u8>, Box<Decision>>> {
        // `None`: the answer outgrew the bound before its end; the core refuses it as such.
        let too_large = vec![b' '; MAX_CATALOG_BYTES + 1];
        let body = body.unwrap_or(&too_large);
        match self
            .guard_ctx(|ctx| guard::catalog_body(body, caller, ctx))
            .and_then(|r| r)
        {
            Ok(out) => (Ok(out), Recorded::NotConfigured),
            Err(d) => {
                let (d, r) = self.recorded(d, view);
                (Err(d), r)
            }
        }
    }

    /// The `HEAD` an immutable check asks, through `guard.registryCluster`: the call's id.
    pub fn dispatch_head(&self, check: &ImmutableCheck, authority: &str) -> Result<u32, String> {
        let Some(guard) = self.config.guard.as_ref() else {
            return Err("the guard is not configured".into());
        };
        let headers = [
            (":method", "HEAD"),
            (":path", check.head_path.as_str()),
            (":authority", authority),
            (":scheme", "http"),
            ("authorization", check.authorization.as_str()),
            (
                "accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws",
            ),
        ];
        self.host().dispatch(
            &guard.registry_cluster,
            &headers,
            None,
            Duration::from_millis(guard.timeout_millis),
        )
    }
}

/// Where a guarded request stands.
#[derive(Debug, Default)]
pub enum GuardStream {
    /// Nothing decided yet (or not a guarded request).
    #[default]
    Idle,
    /// Passed to the registry; `catalog`: its answer is a catalogue to cut.
    Passed {
        /// The caller whose catalogue answer is cut.
        catalog: Option<Verified>,
    },
    /// An immutable tag's `PUT` waiting for its manifest.
    WaitingManifest(Box<ImmutableCheck>),
    /// Its `HEAD` sent (call `call`); `manifest` is `None` when it was too large.
    AwaitingHead {
        /// The check.
        check: Box<ImmutableCheck>,
        /// The manifest.
        manifest: Vec<u8>,
        /// The HTTP call's id.
        call: u32,
    },
    /// A catalogue answer being buffered.
    Catalog(Verified),
    /// Refused (or the answer replaced): whatever still arrives is held.
    Replied,
}

/// What the binding does next.
#[derive(Debug)]
pub enum GuardAction {
    /// Continue, after setting these request headers (the identity headers were removed
    /// at the start).
    Continue(Vec<(&'static str, String)>),
    /// Hold (waiting for more, or refused).
    Pause,
    /// Send this refusal, then hold.
    Refuse(Box<Decision>),
    /// Read the first `n` bytes of the request body, then call
    /// [`GuardStream::on_manifest`].
    ReadManifest(usize),
    /// Read the first `n` bytes of the response body, then call
    /// [`GuardStream::on_catalog`].
    ReadCatalog(usize),
}

impl GuardStream {
    /// The request's headers were decided (`end_of_stream`: no body follows).
    pub fn on_headers(&mut self, step: GuardStep, end_of_stream: bool) -> GuardAction {
        match step {
            GuardStep::Pass(p) => {
                *self = GuardStream::Passed { catalog: p.catalog };
                GuardAction::Continue(p.set)
            }
            GuardStep::Refuse(d) => {
                *self = GuardStream::Replied;
                GuardAction::Refuse(d)
            }
            GuardStep::CheckImmutable(c) => {
                *self = GuardStream::WaitingManifest(c);
                if end_of_stream {
                    // A PUT without a body: its (empty) manifest is decided like any other.
                    GuardAction::ReadManifest(0)
                } else {
                    GuardAction::Pause
                }
            }
        }
    }

    /// A request body chunk; `size` is what the host has buffered so far.
    pub fn on_request_body(&mut self, size: usize, end_of_stream: bool) -> GuardAction {
        match self {
            GuardStream::WaitingManifest(_) if size > MAX_MANIFEST_BYTES => {
                GuardAction::ReadManifest(usize::MAX)
            }
            GuardStream::WaitingManifest(_) if end_of_stream => GuardAction::ReadManifest(size),
            GuardStream::WaitingManifest(_)
            | GuardStream::AwaitingHead { .. }
            | GuardStream::Replied => GuardAction::Pause,
            _ => GuardAction::Continue(Vec::new()),
        }
    }

    /// The request's trailers: they end it.
    pub fn on_request_trailers(&mut self, size: usize) -> GuardAction {
        match self {
            GuardStream::WaitingManifest(_) => {
                GuardAction::ReadManifest(size.min(MAX_MANIFEST_BYTES + 1))
            }
            GuardStream::AwaitingHead { .. } | GuardStream::Replied => GuardAction::Pause,
            _ => GuardAction::Continue(Vec::new()),
        }
    }

    /// Whether the request waits for an immutable tag's manifest (the only time its body
    /// is read).
    pub fn waits_for_manifest(&self) -> bool {
        matches!(self, GuardStream::WaitingManifest(_))
    }

    /// The manifest was read (`None`: more than [`MAX_MANIFEST_BYTES`]): the check to
    /// dispatch, or a refusal for a manifest too large.
    pub fn on_manifest(
        &mut self,
        manifest: Option<Vec<u8>>,
    ) -> Option<(Box<ImmutableCheck>, Option<Vec<u8>>)> {
        match std::mem::replace(self, GuardStream::Replied) {
            GuardStream::WaitingManifest(check) => Some((check, manifest)),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The `HEAD` was sent as call `call`.
    pub fn head_sent(&mut self, check: Box<ImmutableCheck>, manifest: Vec<u8>, call: u32) {
        *self = GuardStream::AwaitingHead {
            check,
            manifest,
            call,
        };
    }

    /// Whether call `call` is this request's `HEAD`; takes what it needs to decide.
    pub fn take_head(&mut self, call: u32) -> Option<(Box<ImmutableCheck>, Vec<u8>)> {
        match std::mem::replace(self, GuardStream::Replied) {
            GuardStream::AwaitingHead {
                check,
                manifest,
                call: c,
            } if c == call => Some((check, manifest)),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The immutable check passed: the request goes on.
    pub fn resumed(&mut self) {
        *self = GuardStream::Passed { catalog: None };
    }

    /// The answer's headers (`status`): a catalogue answered 200 is buffered (the binding
    /// drops `content-length` and holds the headers), anything else streams.
    pub fn on_response_headers(&mut self, status: Option<u16>) -> GuardAction {
        match std::mem::replace(self, GuardStream::Replied) {
            GuardStream::Passed {
                catalog: Some(caller),
            } if status == Some(200) => {
                *self = GuardStream::Catalog(caller);
                GuardAction::Pause
            }
            other => {
                *self = other;
                GuardAction::Continue(Vec::new())
            }
        }
    }

    /// An answer body chunk; `size` is what the host has buffered so far.
    pub fn on_response_body(&mut self, size: usize, end_of_stream: bool) -> GuardAction {
        match self {
            GuardStream::Catalog(_) if size > MAX_CATALOG_BYTES => {
                GuardAction::ReadCatalog(usize::MAX)
            }
            GuardStream::Catalog(_) if end_of_stream => GuardAction::ReadCatalog(size),
            GuardStream::Catalog(_) => GuardAction::Pause,
            _ => GuardAction::Continue(Vec::new()),
        }
    }

    /// The catalogue's caller, once its body is read (the answer is replaced from here).
    pub fn on_catalog(&mut self) -> Option<Verified> {
        match std::mem::replace(self, GuardStream::Replied) {
            GuardStream::Catalog(caller) => Some(caller),
            other => {
                *self = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn pass(catalog: bool) -> GuardStep {
        GuardStep::Pass(Pass {
            set: vec![("x-registry-plan", "community".into())],
            catalog: catalog.then(|| Verified {
                token: std::rc::Rc::new(registry_token_core::guard::token::RegistryToken {
                    subject: "alice".into(),
                    jti: "j".into(),
                    exp: 1,
                    service: "s".into(),
                    access: vec![],
                    plan: None,
                    tenant: None,
                    licenses: vec![],
                    refresh_token_id: None,
                }),
            }),
        })
    }

    #[test]
    fn a_pass_continues_and_streams_its_answer() {
        let mut s = GuardStream::default();
        match s.on_headers(pass(false), false) {
            GuardAction::Continue(set) => assert_eq!(set.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.on_request_body(10, false),
            GuardAction::Continue(_)
        ));
        assert!(matches!(
            s.on_response_headers(Some(200)),
            GuardAction::Continue(_)
        ));
        assert!(
            matches!(s.on_response_body(1 << 30, false), GuardAction::Continue(_)),
            "blobs stream"
        );
    }

    #[test]
    fn a_catalogue_answer_is_buffered_within_its_bound() {
        let mut s = GuardStream::default();
        s.on_headers(pass(true), true);
        assert!(matches!(
            s.on_response_headers(Some(200)),
            GuardAction::Pause
        ));
        assert!(matches!(s.on_response_body(100, false), GuardAction::Pause));
        assert!(matches!(
            s.on_response_body(MAX_CATALOG_BYTES + 1, false),
            GuardAction::ReadCatalog(usize::MAX)
        ));
        assert!(matches!(
            s.on_response_body(100, true),
            GuardAction::ReadCatalog(100)
        ));
        assert!(s.on_catalog().is_some());
        assert!(s.on_catalog().is_none(), "taken once");
        let mut s = GuardStream::default();
        s.on_headers(pass(true), true);
        assert!(
            matches!(s.on_response_headers(Some(401)), GuardAction::Continue(_)),
            "an error answer is not cut"
        );
    }

    #[test]
    fn a_refusal_holds_everything_after_it() {
        let mut s = GuardStream::default();
        let d = handler::Decision {
            status: 401,
            headers: vec![],
            body: String::new(),
            outcome: handler::Outcome::Rejected(Reason::GuardInvalidToken),
            audit: None,
            unknown_kid: false,
        };
        assert!(matches!(
            s.on_headers(GuardStep::Refuse(Box::new(d)), false),
            GuardAction::Refuse(_)
        ));
        assert!(matches!(s.on_request_body(10, false), GuardAction::Pause));
        assert!(matches!(s.on_request_body(10, true), GuardAction::Pause));
        assert!(matches!(s.on_request_trailers(10), GuardAction::Pause));
    }
}
