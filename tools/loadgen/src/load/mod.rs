//! The load engine: pre-generated requests, a fixed number of keep-alive connections for
//! a fixed time, closed loop (as fast as the gateway answers) or open loop (a fixed offered
//! rate, latency measured from the intended send time so queueing is not hidden).
//!
//! [`Mode`] says how requests prove who they are; [`OpTokPool`] (`pool.rs`) holds the
//! OpToks, [`Workload`] (`workload.rs`) the requests of one run, [`run`] (`run.rs`) drives
//! the gateway and says what it saw.

mod pool;
mod run;
mod workload;

pub use pool::OpTokPool;
pub use run::{run, RunResult, RunSpec};
pub use workload::Workload;

/// Seconds covered by one batch of pre-generated DPoP proofs (each proof's `iat` is the
/// middle of its batch, well inside the filter's ±60 s window).
pub const PROOF_EPOCH_SECONDS: u64 = 60;

/// How requests prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Authorization: Bearer <OpTok>`, unbound OpToks.
    Bearer,
    /// `Authorization: DPoP <OpTok>` + a fresh `DPoP` proof; OpToks bound by `cnf.jkt`.
    Dpop,
    /// `Authorization: Bearer <OpTok>` over TLS with a client certificate; OpToks bound by
    /// `cnf.x5t#S256`.
    Mtls,
    /// `Authorization: DPoP <OpTok>` (bound by `cnf.jkt`) + a hostile proof, rotating over
    /// [`HOSTILE_KINDS`]: every answer should be a 401 ([`HOSTILE_REASONS`]).
    HostileDpop,
    /// `Authorization: DPoP <OpTok>` (bound by `cnf.jkt`) + `DPoP: x`: the cheapest proof
    /// refusal, 401 `dpop_malformed`.
    MalformedDpop,
    /// `POST` the OAuth2 password grant (containerd's first request): the form body
    /// `grant_type=password&username=…&password=<OpTok>&client_id=…` plus the GET path's
    /// query (`service`, `scope`); unbound OpToks.
    Password,
    /// `POST` the OAuth2 refresh grant (the Docker daemon after `docker login`):
    /// `grant_type=refresh_token&refresh_token=…&client_id=…` plus the query; the pool
    /// holds refresh tokens ([`OpTokPool::from_tokens`]).
    Refresh,
}

/// The hostile proofs of [`Mode::HostileDpop`], in rotation order.
pub const HOSTILE_KINDS: [&str; 4] = [
    "8192-bit RSA jwk, 34-bit e, PS512, 1024-byte garbage signature",
    "8192-bit RSA jwk, e = AQAB, PS512, 1024-byte garbage signature",
    "well-formed ES256 proof signed by a key other than the bound one",
    "well-formed ES256 proof by the bound key with a wrong ath",
];

/// Refusal reasons expected from [`Mode::HostileDpop`].
pub const HOSTILE_REASONS: &[&str] = &["dpop_jwk", "dpop_jkt_mismatch", "dpop_ath"];

/// Refusal reasons expected from [`Mode::MalformedDpop`].
pub const MALFORMED_REASONS: &[&str] = &["dpop_malformed"];

impl Mode {
    /// Parses `bearer`, `dpop`, `mtls`, `hostile-dpop`, `malformed-dpop`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "bearer" => Some(Mode::Bearer),
            "dpop" => Some(Mode::Dpop),
            "mtls" => Some(Mode::Mtls),
            "hostile-dpop" => Some(Mode::HostileDpop),
            "malformed-dpop" => Some(Mode::MalformedDpop),
            "password" => Some(Mode::Password),
            "refresh" => Some(Mode::Refresh),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bearer => "bearer",
            Mode::Dpop => "dpop",
            Mode::Mtls => "mtls",
            Mode::HostileDpop => "hostile-dpop",
            Mode::MalformedDpop => "malformed-dpop",
            Mode::Password => "password",
            Mode::Refresh => "refresh",
        }
    }

    /// How the OpToks of this mode are bound: the refusing DPoP modes use DPoP-bound
    /// OpToks, so a [`Mode::Dpop`] pool serves them.
    pub fn binding(self) -> Mode {
        match self {
            Mode::HostileDpop | Mode::MalformedDpop => Mode::Dpop,
            Mode::Password => Mode::Bearer,
            m => m,
        }
    }

    /// For the modes whose every answer should be a refusal: the 401 reasons expected
    /// (`registry_token_rejected_total` labels). `None` for the modes that mint.
    pub fn expected_refusals(self) -> Option<&'static [&'static str]> {
        match self {
            Mode::HostileDpop => Some(HOSTILE_REASONS),
            Mode::MalformedDpop => Some(MALFORMED_REASONS),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bind() {
        for m in [
            Mode::Bearer,
            Mode::Dpop,
            Mode::Mtls,
            Mode::HostileDpop,
            Mode::MalformedDpop,
        ] {
            assert_eq!(Mode::parse(m.name()), Some(m));
        }
        assert_eq!(Mode::HostileDpop.binding(), Mode::Dpop);
        assert_eq!(Mode::MalformedDpop.binding(), Mode::Dpop);
        assert!(Mode::Dpop.expected_refusals().is_none());
        assert_eq!(
            Mode::MalformedDpop.expected_refusals(),
            Some(&["dpop_malformed"][..])
        );
    }
}
