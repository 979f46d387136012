//! The `query` target: the proxy's reading of a query
//! (`holepunch::decision::query::go_query_pairs`, and through it the region and
//! other-agent rules of `decide_request` and the metrics cache key,
//! `holepunch::proxy::coalesce::Coalescer::key`) against the model of Go's
//! `url.ParseQuery` ([`crate::go`]).

use crate::go;
use holepunch::decision::allowlist::{Allowlist, Group};
use holepunch::proxy::coalesce::{Coalescer, MAX_SHARED_PARAMS};
use holepunch::decision::head::{decide_request, Decision, Forbidden, Head, Rules};
use holepunch::decision::query::go_query_pairs;
use holepunch::decision::target::parse_target;
use http::header::HeaderMap;
use http::Method;

/// The input: a query string (what follows the `?`), then optionally a
/// newline and an `Accept` value.
///
/// Invariants:
/// - `go_query_pairs` gives exactly the pairs Go's `parseQuery` keeps, in
///   order;
/// - the decision on an agent group path and on `/v1/metrics` with this
///   query, with `NOMAD_REGION=europe`: refused for another region exactly
///   when a `region` Go reads is neither empty nor `europe`, and on the
///   agent path for another agent exactly when Go reads a `node_id` or
///   `server_id`, naming the first such pair; safe past Go's parameter
///   limit too (the proxy reads what Go would have read below it);
/// - the cache key is what Nomad's metrics handler reads, as Go reads it:
///   `format` and `pretty` by `Get` (the first value), `Accept` byte for
///   byte for Prometheus; none past [`MAX_SHARED_PARAMS`] parameters.
pub fn query(data: &[u8]) {
    let (query, accept) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => (&data[..nl], Some(&data[nl + 1..])),
        None => (data, None),
    };
    let shown = query.escape_ascii().to_string();
    let ours: Vec<(Vec<u8>, Vec<u8>)> = go_query_pairs(query)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let go_pairs = go::parse_query(query);
    assert_eq!(ours, go_pairs, "{shown}: not the pairs Go keeps");

    decision(query, &go_pairs, b"/v1/agent/host", Group::AgentHost);
    decision(query, &go_pairs, b"/v1/metrics", Group::Metrics);

    let target = [&b"/v1/metrics?"[..], query].concat();
    let key = Coalescer::key(&target, accept);
    let want = if go::query_params(query) > MAX_SHARED_PARAMS {
        None
    } else {
        let values = go::url_query(query);
        let key: Vec<u8> = if go::get(&values, b"format") == Some(b"prometheus") {
            [&b"prometheus\0"[..], accept.unwrap_or_default()].concat()
        } else if go::get(&values, b"pretty").is_some_and(|v| v != b"0") {
            b"json pretty".to_vec()
        } else {
            b"json".to_vec()
        };
        Some(key.into_boxed_slice())
    };
    assert_eq!(key, want, "{shown}: not the key of what Nomad reads");
}

/// The decision on `path?query` for a GET from an allowed client, every
/// group open, `NOMAD_REGION=europe`, against the first pair of Go's that
/// a rule refuses.
fn decision(query: &[u8], pairs: &[(Vec<u8>, Vec<u8>)], path: &[u8], group: Group) {
    let rules = Rules {
        allow: Group::ALL
            .iter()
            .fold(Allowlist::none(), |a, &g| a.with(g, true)),
        region: Some("europe".to_string()),
        ..Rules::default()
    };
    let target = [path, b"?", query].concat();
    let headers = HeaderMap::new();
    let got = decide_request(
        &rules,
        &Head {
            method: &Method::GET,
            target: &target,
            parsed: &parse_target(&target),
            headers: &headers,
            client: None,
        },
    );
    if let Decision::Refuse(_) = got {
        // The target rules refused the query's bytes: nothing is read.
        return;
    }
    let want = pairs.iter().find_map(|(k, v)| match k.as_slice() {
        b"region" if !v.is_empty() && v != b"europe" => Some(Forbidden::OtherRegion {
            asked: String::from_utf8_lossy(v).into_owned(),
            here: "europe".to_string(),
        }),
        b"node_id" if group.is_agent() => Some(Forbidden::OtherAgent("node_id")),
        b"server_id" if group.is_agent() => Some(Forbidden::OtherAgent("server_id")),
        _ => None,
    });
    let shown = target.escape_ascii().to_string();
    match want {
        Some(forbidden) => assert_eq!(got, Decision::Forbid(forbidden), "{shown}"),
        None => assert_eq!(
            got,
            Decision::Forward {
                group: Some(group),
                origin_offset: 0
            },
            "{shown}"
        ),
    }
    // Past Go's limit Nomad reads nothing, so refusing is never less safe.
    let seen = go::url_query(query);
    let reaches = seen.iter().any(|(k, v)| match k.as_slice() {
        b"region" => !v.is_empty() && v != b"europe",
        b"node_id" | b"server_id" => group.is_agent(),
        _ => false,
    });
    if reaches {
        assert!(
            matches!(got, Decision::Forbid(_)),
            "{shown}: Nomad would read it"
        );
    }
}
