//! The one retry policy of every request on the Task API socket: the
//! forwarded ones (`ProxyHttp::error_while_proxy`, in `crate::proxy`) and
//! the shared metrics fetch (`crate::proxy::fetch`). Pure.
//!
//! A request is sent again, once, on another connection, when the failure
//! came from a pooled connection the agent had closed, the method is GET or
//! HEAD, nothing of the response has reached the client, and the request was
//! not ended for a credential it lost. Nothing else is retried: under ALL a
//! write may already have happened.
//!
//! Which failures come from a closed pooled connection is Pingora's to
//! say: it marks a response header that could not be read (the connection
//! closed, or an OS error) as retryable on a reused connection only
//! (`RetryType::ReusedOnly`: pingora-core 0.9.1 `protocols/http/v1/client.rs`,
//! `read_response`), and leaves every other error not retryable
//! (`RetryType::Decided(false)`, pingora-error 0.9.1 `lib.rs`, the default of
//! `Error::create`). Connect errors are never retried.

use http::Method;
use pingora::prelude::RetryType;

/// What the policy looks at, for one failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// Whether this request was already sent again once.
    pub retried: bool,
    /// Whether any of the response (its header) has gone to the client.
    pub response_written: bool,
    /// Whether the attempt went out on a pooled connection.
    pub reused: bool,
    /// What Pingora says of the error ([`RetryType`]).
    pub marked: RetryType,
    /// Whether the request was ended for a client credential it lost
    /// (revoked token, certificate no longer trusted): sent again, it would
    /// be answered again.
    pub revoked: bool,
}

/// Whether the failed attempt is sent again, on a new connection.
pub fn retry(f: &Failure<'_>) -> bool {
    let safe = *f.method == Method::GET || *f.method == Method::HEAD;
    if f.revoked || !safe || f.retried || f.response_written {
        return false;
    }
    match f.marked {
        RetryType::Decided(retry) => retry,
        RetryType::ReusedOnly => f.reused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_pooled(method: &Method) -> Failure<'_> {
        Failure {
            method,
            retried: false,
            response_written: false,
            reused: true,
            marked: RetryType::ReusedOnly,
            revoked: false,
        }
    }

    /// The README's promise: a GET or HEAD whose pooled connection the
    /// agent closed is sent again, once.
    #[test]
    fn a_safe_request_on_a_closed_pooled_connection_is_retried_once() {
        for method in [Method::GET, Method::HEAD] {
            let f = closed_pooled(&method);
            assert!(retry(&f), "{method}");
            assert!(!retry(&Failure { retried: true, ..f }), "{method} twice");
        }
    }

    #[test]
    fn nothing_else_is_retried() {
        let get = Method::GET;
        let f = closed_pooled(&get);
        // A new connection: the agent really is not answering.
        assert!(!retry(&Failure { reused: false, ..f }));
        // Response bytes already went to the client.
        assert!(!retry(&Failure {
            response_written: true,
            ..f
        }));
        // Ended for a lost credential.
        assert!(!retry(&Failure { revoked: true, ..f }));
        // An error Pingora does not mark retryable (a timeout, a write
        // error, a connect error), reused or not.
        for reused in [true, false] {
            assert!(!retry(&Failure {
                reused,
                marked: RetryType::Decided(false),
                ..f
            }));
        }
        // A method that may have written something.
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            assert!(!retry(&closed_pooled(&method)), "{method}");
        }
    }

    /// An error Pingora marks retryable whatever the connection (its HTTP/2
    /// client's, not used here) is retried under the same conditions.
    #[test]
    fn an_error_marked_retryable_is_retried_once_on_any_connection() {
        let get = Method::GET;
        let f = Failure {
            reused: false,
            marked: RetryType::Decided(true),
            ..closed_pooled(&get)
        };
        assert!(retry(&f));
        assert!(!retry(&Failure { retried: true, ..f }));
    }
}
