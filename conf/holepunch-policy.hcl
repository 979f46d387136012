# The ACL policy nomad-holepunch's workload identity needs, group by group.
#
# METRICS, AGENT_HEALTH and STATUS need no policy: with the default groups,
# do not apply this file at all. For the others, keep the blocks of the groups
# you allow and delete the rest, then attach the policy to the job:
#
#   nomad acl policy apply -namespace default -job holepunch \
#     -description "nomad-holepunch endpoint groups" holepunch conf/holepunch-policy.hcl
#
# (for the Prometheus sidecar: -job prometheus -group prometheus -task holepunch)
#
# Without the policy, Nomad answers the proxied request with 403 "Permission
# denied"; the proxy passes that through unchanged. A 403 that starts with
# "forbidden:" comes from the proxy itself and names the HOLEPUNCH_ALLOW_*
# variable that would open the path.

# AGENT_SELF (/v1/agent/self), AGENT_SERVERS (/v1/agent/servers, GET),
# AGENT_HOST (/v1/agent/host), AGENT_SCHEDULERS (/v1/agent/schedulers,
# /v1/agent/schedulers/config; servers only).
agent {
  policy = "read"
}

# NODES (/v1/nodes, /v1/node/:id, /v1/node/:id/allocations) and
# AGENT_MEMBERS (/v1/agent/members).
node {
  policy = "read"
}

# PLUGINS (/v1/plugins, /v1/plugin/csi/:id).
plugin {
  policy = "read"
}

# SERVICES (/v1/services, /v1/service/:name). A workload identity reads the
# services of its own namespace without this block; it is needed for the
# other namespaces Prometheus should discover.
namespace "*" {
  capabilities = ["read-job"]
}
