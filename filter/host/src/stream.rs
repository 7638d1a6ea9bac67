//! What the stream context does at each end of a request it owns (`/token`, `/healthz`,
//! the JWKS): the request may end with its headers, with a body (one or more chunks), with
//! trailers after a body or right after the headers, or with a reset. A `/token` request is
//! decided exactly once, at whichever end comes first, and no callback of a request the
//! filter owns ever lets it continue to the route: fail closed, whatever the protocol
//! (HTTP/1.1 chunked with `enable_trailers`, HTTP/2 DATA then trailers).
//!
//! A reset needs nothing here: Envoy destroys the context, the request was paused, nothing
//! reached the route and nothing was decided (no client is waiting for an answer).

use crate::request::{body_ready, TokenRequestHead, BODY_LIMIT};

/// Where a request stands for the stream context.
#[derive(Debug, Default)]
pub enum StreamState {
    /// Not the filter's (every callback continues to the route).
    #[default]
    PassThrough,
    /// A `/token` request waiting for the end of its body.
    Waiting(TokenRequestHead),
    /// Answered with a local reply (a decision, `/healthz`, the JWKS): whatever still
    /// arrives is held, never continued.
    Replied,
}

/// What the binding does in a callback.
#[derive(Debug)]
pub enum Step {
    /// Let the request go on to the route (only for a request that is not the filter's).
    Continue,
    /// Hold the request (waiting for more, or already answered).
    Pause,
    /// Decide the token request now, send the reply, then hold the request.
    Answer {
        /// What the headers said.
        head: TokenRequestHead,
        /// `None`: no body (the headers ended the request, or it is not a `POST`);
        /// `Some(n)`: read at most `n` bytes of the body the host has buffered so far
        /// (possibly none).
        body: Option<usize>,
    },
}

impl StreamState {
    /// The headers of a `/token` request arrived (`end_of_stream`: nothing follows them).
    /// A `POST` that has more to come waits for its body; anything else is answered now.
    pub fn on_token_headers(&mut self, head: TokenRequestHead, end_of_stream: bool) -> Step {
        if head.waits_for_body(end_of_stream) {
            *self = StreamState::Waiting(head);
            Step::Pause
        } else {
            *self = StreamState::Replied;
            Step::Answer { head, body: None }
        }
    }

    /// The headers were answered with a local reply other than a decision (`/healthz`, the
    /// JWKS).
    pub fn on_local_reply(&mut self) {
        *self = StreamState::Replied;
    }

    /// A body chunk arrived; `body_size` is what the host has buffered so far. A waiting
    /// request is answered at the end of its body, or as soon as it reaches
    /// [`BODY_LIMIT`] (the core answers 413 without the rest).
    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Step {
        match self {
            StreamState::PassThrough => Step::Continue,
            StreamState::Replied => Step::Pause,
            StreamState::Waiting(_) if !body_ready(body_size, end_of_stream) => Step::Pause,
            StreamState::Waiting(_) => self.answer(Some(body_size.min(BODY_LIMIT))),
        }
    }

    /// The trailers arrived: they end the request, so a waiting request is decided with
    /// the body gathered so far (up to [`BODY_LIMIT`]; none if no body came).
    pub fn on_trailers(&mut self) -> Step {
        match self {
            StreamState::PassThrough => Step::Continue,
            StreamState::Replied => Step::Pause,
            StreamState::Waiting(_) => self.answer(Some(BODY_LIMIT)),
        }
    }

    /// Takes the waiting head: the request is answered from here on.
    fn answer(&mut self, body: Option<usize>) -> Step {
        match std::mem::replace(self, StreamState::Replied) {
            StreamState::Waiting(head) => Step::Answer { head, body },
            // Not reached (callers match `Waiting` first); holding is the safe answer.
            _ => Step::Pause,
        }
    }
}
