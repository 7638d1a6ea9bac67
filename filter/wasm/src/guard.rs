//! The stream context on the registry's route (guard mode, docs/GUARD.md): hostcalls only.
//! What is decided is `registry-token-core`'s ([`registry_token_core::handler::guard`]);
//! when each end of the request is decided is [`GuardStream`]'s.

use proxy_wasm::types::{Action, BufferType};

use registry_token_core::handler::guard::{GuardView, HeadAnswer, IDENTITY_HEADERS};
use registry_token_core::handler::Decision;
use registry_token_host::guard::{GuardAction, GuardStream};
use registry_token_host::metrics::LEDGER_DROPPED;
use registry_token_host::state::Recorded;

use crate::{envoy, now_nanos, Filter, Stream, AUDIT_PROPERTY};

/// What the guard keeps of a request while it waits.
#[derive(Debug)]
pub(crate) struct Guarded {
    method: String,
    path: String,
    authority: String,
    authorization: Vec<String>,
}

impl Guarded {
    fn view(&self) -> (GuardView<'_>, Vec<&str>) {
        let auth: Vec<&str> = self.authorization.iter().map(String::as_str).collect();
        (
            GuardView {
                method: &self.method,
                path: &self.path,
                authorization: &[],
            },
            auth,
        )
    }
}

impl Stream {
    /// The headers of a request on the registry's route.
    pub(crate) fn on_registry_headers(
        &mut self,
        filter: &std::rc::Rc<Filter>,
        path: String,
        end_of_stream: bool,
    ) -> Action {
        // Whatever the client sent under the identity headers' names never reaches the
        // registry or a rate limit.
        for name in IDENTITY_HEADERS {
            envoy::set_request_header(name, None);
        }
        let headers = envoy::request_headers();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let guarded = Guarded {
            method: value(":method"),
            authority: value(":authority"),
            authorization: headers
                .iter()
                .filter(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .collect(),
            path,
        };
        let (mut view, auth) = guarded.view();
        view.authorization = &auth;
        let (step, recorded) = filter.state.guard(&view);
        drop(auth);
        self.guarded = Some(guarded);
        note(filter, recorded);
        let action = self.guard.on_headers(step, end_of_stream);
        self.run_guard(action)
    }

    /// Does what a [`GuardAction`] says.
    pub(crate) fn run_guard(&mut self, action: GuardAction) -> Action {
        let Some(filter) = self.filter.clone() else {
            return Action::Continue;
        };
        match action {
            GuardAction::Continue(set) => {
                for (name, value) in &set {
                    envoy::set_request_header(name, Some(value));
                }
                Action::Continue
            }
            GuardAction::Pause => Action::Pause,
            GuardAction::Refuse(d) => {
                self.refuse(&filter, &d);
                Action::Pause
            }
            GuardAction::ReadManifest(n) => {
                let manifest = (n != usize::MAX)
                    .then(|| envoy::body(BufferType::HttpRequestBody, n).unwrap_or_default());
                let Some((check, manifest)) = self.guard.on_manifest(manifest) else {
                    return Action::Pause;
                };
                let Some(g) = &self.guarded else {
                    return Action::Pause;
                };
                let (mut view, auth) = g.view();
                view.authorization = &auth;
                let sent = match &manifest {
                    Some(_) => filter.state.dispatch_head(&check, &g.authority),
                    None => Err("the manifest is too large".into()),
                };
                match (sent, manifest) {
                    (Ok(call), Some(manifest)) => {
                        self.guard.head_sent(check, manifest, call);
                        Action::Pause
                    }
                    (sent, manifest) => {
                        if let Err(why) = &sent {
                            if manifest.is_some() {
                                log::warn!("registry-token-filter: guard: the immutable tag's HEAD could not be sent: {why}");
                            }
                        }
                        let answer = HeadAnswer {
                            status: None,
                            digest: None,
                        };
                        let (result, recorded) = filter.state.guard_immutable(
                            &check,
                            manifest.as_deref(),
                            answer,
                            &view,
                        );
                        drop(auth);
                        note(&filter, recorded);
                        match result {
                            Ok(pass) => {
                                self.guard.resumed();
                                self.run_guard(GuardAction::Continue(pass.set))
                            }
                            Err(d) => {
                                self.refuse(&filter, &d);
                                Action::Pause
                            }
                        }
                    }
                }
            }
            GuardAction::ReadCatalog(n) => {
                let body = (n != usize::MAX)
                    .then(|| envoy::body(BufferType::HttpResponseBody, n).unwrap_or_default());
                let Some(caller) = self.guard.on_catalog() else {
                    return Action::Continue;
                };
                let Some(g) = &self.guarded else {
                    return Action::Continue;
                };
                let (mut view, auth) = g.view();
                view.authorization = &auth;
                let (result, recorded) =
                    filter.state.guard_catalog(body.as_deref(), &caller, &view);
                drop(auth);
                note(&filter, recorded);
                match result {
                    Ok(out) => {
                        if envoy::replace_body(
                            BufferType::HttpResponseBody,
                            n.min(body.map_or(0, |b| b.len())),
                            &out,
                        ) {
                            Action::Continue
                        } else {
                            // Nothing unfiltered is passed on.
                            log::warn!("registry-token-filter: guard: the catalogue answer could not be replaced");
                            Action::Pause
                        }
                    }
                    Err(d) => {
                        self.refuse(&filter, &d);
                        Action::Pause
                    }
                }
            }
        }
    }

    /// The answer to an immutable tag's `HEAD` (call `call`).
    pub(crate) fn on_head_answer(&mut self, call: u32) {
        let Some(filter) = self.filter.clone() else {
            return;
        };
        let Some((check, manifest)) = self.guard.take_head(call) else {
            return;
        };
        let Some(g) = &self.guarded else {
            return;
        };
        let status = envoy::call_response_header(":status").and_then(|s| s.parse::<u16>().ok());
        let digest = envoy::call_response_header("docker-content-digest");
        let (mut view, auth) = g.view();
        view.authorization = &auth;
        let answer = HeadAnswer {
            status,
            digest: digest.as_deref(),
        };
        let (result, recorded) =
            filter
                .state
                .guard_immutable(&check, Some(&manifest), answer, &view);
        drop(auth);
        note(&filter, recorded);
        match result {
            Ok(pass) => {
                for (name, value) in &pass.set {
                    envoy::set_request_header(name, Some(value));
                }
                self.guard.resumed();
                let _ = proxy_wasm::hostcalls::resume_http_request();
            }
            Err(d) => self.refuse(&filter, &d),
        }
    }

    /// Counts, audits and sends a guard refusal.
    fn refuse(&mut self, filter: &Filter, d: &Decision) {
        filter.metrics.record(&d.outcome);
        if let Some(audit) = &d.audit {
            let line = audit.to_line();
            if filter
                .log_gate
                .info_enabled(now_nanos(), envoy::info_logged)
            {
                log::info!("registry-token-filter: audit {line}");
            }
            let _ =
                proxy_wasm::hostcalls::set_property(vec![AUDIT_PROPERTY], Some(line.as_bytes()));
        }
        self.guard = GuardStream::Replied;
        self.reply(d);
    }
}

/// Counts a refusal the ledger's buffer could not take.
fn note(filter: &Filter, recorded: Recorded) {
    if recorded == Recorded::Dropped {
        filter.metrics.increment(LEDGER_DROPPED);
    }
}
