//! The tests of the endpoint groups and the path decision
//! ([`crate::decision::allowlist`]), through the target rule as the whole
//! decision reads a request ([`crate::decision::head::decide_target`]). Here,
//! not in `allowlist.rs`, so that the allowlist imports nothing of `head`,
//! which imports it.

use crate::decision::allowlist::*;
use crate::decision::head::{decide_target, Decision};
use crate::decision::target::{parse_target, Refusal};
use http::Method;

const GET: Method = Method::GET;

/// The target and the allowlist, as the whole decision makes them.
fn decide(allow: &Allowlist, method: &Method, raw: &[u8]) -> Decision {
    decide_target(allow, method, &parse_target(raw))
}

fn fwd(group: Group) -> Decision {
    Decision::Forward {
        group: Some(group),
        origin_offset: 0,
    }
}

#[test]
fn defaults_are_metrics_and_agent_health() {
    let a = Allowlist::default();
    for g in Group::ALL {
        assert_eq!(a.allows(g), g.default_enabled(), "{g:?}");
    }
    assert!(!a.all());
    assert_eq!(decide(&a, &GET, b"/v1/metrics"), fwd(Group::Metrics));
    assert_eq!(
        decide(&a, &GET, b"/v1/metrics?format=prometheus"),
        fwd(Group::Metrics)
    );
    assert_eq!(
        decide(&a, &GET, b"/v1/agent/health"),
        fwd(Group::AgentHealth)
    );
    assert_eq!(
        decide(&a, &GET, b"/v1/agent/self"),
        Decision::Deny {
            group: Some(Group::AgentSelf)
        }
    );
    assert_eq!(
        decide(&a, &GET, b"/v1/jobs"),
        Decision::Deny { group: None }
    );
}

#[test]
fn every_group_path_table() {
    let table: &[(&str, Option<Group>)] = &[
        ("/v1/metrics", Some(Group::Metrics)),
        ("/v1/agent/health", Some(Group::AgentHealth)),
        ("/v1/agent/self", Some(Group::AgentSelf)),
        ("/v1/agent/members", Some(Group::AgentMembers)),
        ("/v1/agent/servers", Some(Group::AgentServers)),
        ("/v1/agent/host", Some(Group::AgentHost)),
        ("/v1/agent/schedulers", Some(Group::AgentSchedulers)),
        ("/v1/agent/schedulers/config", Some(Group::AgentSchedulers)),
        ("/v1/nodes", Some(Group::Nodes)),
        (
            "/v1/node/f7476465-4d6e-c0de-26d0-e383c49be941",
            Some(Group::Nodes),
        ),
        ("/v1/node/abc/allocations", Some(Group::Nodes)),
        ("/v1/plugins", Some(Group::Plugins)),
        ("/v1/plugin/csi/ebs", Some(Group::Plugins)),
        ("/v1/services", Some(Group::Services)),
        ("/v1/service/web", Some(Group::Services)),
        ("/v1/status/leader", Some(Group::Status)),
        ("/v1/status/peers", Some(Group::Status)),
        // Near misses stay outside every group.
        ("/v1/metrics/", None),
        ("/v1/metricsx", None),
        ("/v1/Metrics", None),
        ("/v1/agent/healthz", None),
        ("/v1/agent/schedulers/other", None),
        ("/v1/node/", None),
        ("/v1/node", None),
        ("/v1/nodesx", None),
        ("/v1/service/", None),
        ("/v1/status/other", None),
        ("/v1/agent/monitor", None),
        ("/v1/event/stream", None),
        ("/v2/metrics", None),
        ("/metrics", None),
    ];
    for (path, want) in table {
        assert_eq!(Group::of_path(path.as_bytes()), *want, "{path}");
    }
    // Every group with only that group open: its paths forward, the rest deny.
    for &g in &Group::ALL {
        let only = Allowlist::none().with(g, true);
        for (path, want) in table {
            let got = decide(&only, &GET, path.as_bytes());
            if *want == Some(g) {
                assert_eq!(got, fwd(g), "{path} under {g:?}");
            } else {
                assert!(
                    !matches!(got, Decision::Forward { .. }),
                    "{path} under {g:?}"
                );
            }
        }
    }
}

#[test]
fn methods() {
    let a = Allowlist::default().with(Group::Services, true);
    assert_eq!(
        decide(&a, &Method::HEAD, b"/v1/metrics"),
        fwd(Group::Metrics)
    );
    for m in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ] {
        assert_eq!(decide(&a, &m, b"/v1/metrics"), Decision::MethodNotAllowed);
        assert_eq!(
            decide(&a, &m, b"/v1/service/web/_nomad-task-123"),
            Decision::MethodNotAllowed
        );
        // A closed group's path is 403 whatever the method.
        assert_eq!(
            decide(&a, &m, b"/v1/nodes"),
            Decision::Deny {
                group: Some(Group::Nodes)
            }
        );
        assert_eq!(decide(&a, &m, b"/health"), Decision::MethodNotAllowed);
    }
    let ext = Method::from_bytes(b"PURGE").unwrap();
    assert_eq!(decide(&a, &ext, b"/v1/metrics"), Decision::MethodNotAllowed);
}

#[test]
fn all_forwards_every_v1_path_and_method_but_keeps_path_rules() {
    let a = Allowlist::none().with_all(true);
    assert_eq!(
        decide(&a, &Method::DELETE, b"/v1/job/example?purge=true"),
        Decision::Forward {
            group: None,
            origin_offset: 0
        }
    );
    assert_eq!(
        decide(&a, &Method::PUT, b"/v1/var/app/config"),
        Decision::Forward {
            group: None,
            origin_offset: 0
        }
    );
    assert_eq!(
        decide(&a, &Method::POST, b"/v1/metrics"),
        fwd(Group::Metrics)
    );
    assert_eq!(
        decide(&a, &GET, b"/v1/metrics/../jobs"),
        Decision::Refuse(Refusal::DotSegment)
    );
    assert_eq!(decide(&a, &GET, b"/other"), Decision::NotFound);
}

#[test]
fn local_routes() {
    let a = Allowlist::none();
    assert_eq!(decide(&a, &GET, b"/health"), Decision::Health);
    assert_eq!(decide(&a, &Method::HEAD, b"/health?x=1"), Decision::Health);
    assert_eq!(decide(&a, &GET, b"/ready"), Decision::Ready);
    assert_eq!(
        decide(&a, &Method::POST, b"/ready"),
        Decision::MethodNotAllowed
    );
    assert_eq!(decide(&a, &GET, b"/readyz"), Decision::NotFound);
    assert_eq!(decide(&a, &GET, b"/"), Decision::NotFound);
    assert_eq!(decide(&a, &GET, b"/v1"), Decision::NotFound);
    assert_eq!(decide(&a, &GET, b"/healthz"), Decision::NotFound);
    assert_eq!(decide(&a, &GET, b"/V1/metrics"), Decision::NotFound);
    assert_eq!(decide(&a, &GET, b"/v1/"), Decision::Deny { group: None });
}

#[test]
fn decoded_path_decides() {
    let a = Allowlist::default();
    assert_eq!(decide(&a, &GET, b"/v1/m%65trics"), fwd(Group::Metrics));
    assert_eq!(
        decide(&a, &GET, b"/v1/%6eodes"),
        Decision::Deny {
            group: Some(Group::Nodes)
        }
    );
}

/// The names are the `group` label values of the proxy's metrics and
/// the access log (README, "Its own metrics"): a dashboard depends on them.
#[test]
fn group_names_and_flags() {
    let names: Vec<_> = Group::ALL.iter().map(|g| g.name()).collect();
    assert_eq!(
        names,
        [
            "metrics",
            "agent_health",
            "agent_self",
            "agent_members",
            "agent_servers",
            "agent_host",
            "agent_schedulers",
            "nodes",
            "plugins",
            "services",
            "status"
        ]
    );
    for g in Group::ALL {
        assert_eq!(
            g.flag(),
            format!("HOLEPUNCH_ALLOW_{}", g.name().to_ascii_uppercase()),
            "{g:?}"
        );
    }
}

#[test]
fn absolute_form() {
    let a = Allowlist::default();
    assert_eq!(
        decide(
            &a,
            &GET,
            b"http://localhost:6120/v1/metrics?format=prometheus"
        ),
        Decision::Forward {
            group: Some(Group::Metrics),
            origin_offset: 21
        }
    );
    for raw in [
        &b"http://localhost/v1/agent/self"[..],
        b"http://localhost/health",
        b"http://localhost/other",
    ] {
        assert_eq!(
            decide(&a, &GET, raw),
            Decision::Refuse(Refusal::AbsoluteFormNotForwarded)
        );
    }
    assert_eq!(
        decide(&a, &Method::POST, b"http://localhost/v1/metrics"),
        Decision::Refuse(Refusal::AbsoluteFormNotForwarded)
    );
}

/// `with` sets a group, it does not toggle it: opening an open group
/// keeps it open, closing a closed one keeps it closed.
#[test]
fn opening_or_closing_twice_changes_nothing() {
    for g in Group::ALL {
        let open = Allowlist::none().with(g, true);
        assert!(open.with(g, true).allows(g), "{g:?}");
        let closed = Allowlist::default().with(g, false);
        assert!(!closed.with(g, false).allows(g), "{g:?}");
    }
}
