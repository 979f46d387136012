# The ACL policy the holepunch system job (conf/holepunch.nomad.hcl) needs,
# group by group.
#
# METRICS, AGENT_HEALTH, STATUS and SERVICES need no policy: with the default
# groups, do not apply this file at all. For the others, keep the blocks of
# the groups you allow and delete the rest, then attach the policy to the job:
#
#   nomad acl policy apply -namespace default -job holepunch \
#     -description "nomad-holepunch endpoint groups" holepunch conf/holepunch-policy.hcl
#
# One policy per job, named after its job. A policy is stored under its name
# and holds a single job attachment (hashicorp/nomad nomad/structs/acl.go,
# ACLPolicy.JobACL; command/acl_policy_apply.go). Applying the name
# `holepunch` again with another -job moves the policy off this system job,
# whose AGENT_*, NODES and PLUGINS requests then get 403. For another job
# running the proxy, copy this file and apply it under that job's name:
#
#   nomad acl policy apply -namespace NS -job JOB JOB my-copy.hcl
#
# The Prometheus sidecar (conf/prometheus-sidecar.nomad.hcl) needs no policy:
# SERVICES needs none (see below).
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
#
# /v1/node/:id/allocations keeps only the allocations in namespaces where
# the token has read-job (hashicorp/nomad nomad/node_endpoint.go,
# Node.GetAllocs): with node:read alone it answers []. To see allocations,
# add this rule for each namespace whose allocations you need. Each
# allocation in that answer carries its whole job spec (env, templates), so
# whoever can reach the proxy's NODES group can then read those jobs: name
# the namespaces one by one rather than "*", and turn on client tokens.
#
#   namespace "default" {
#     capabilities = ["read-job"]
#   }
node {
  policy = "read"
}

# PLUGINS (/v1/plugins, /v1/plugin/csi/:id).
plugin {
  policy = "read"
}

# SERVICES (/v1/services, /v1/service/:name) needs no rule: a workload
# identity may list and read the service registrations of any namespace it
# names (hashicorp/nomad acl/acl.go AllowServiceRegistrationReadList, with
# isWorkload set by nomad/service_registration_endpoint.go). Only a wildcard
# list (?namespace=*) needs read-job, and Prometheus's nomad_sd_configs cannot
# use one. Do not add `namespace "*" { capabilities = ["read-job"] }` for it:
# that lets the token read every job spec in every namespace.
