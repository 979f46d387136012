# nomad-holepunch as a system job: one proxy on every Linux node, serving that
# node's Nomad agent API (metrics and agent health by default) on port 6120,
# and its own metrics on port 6121.
#
#   nomad job run -var image=<your registry>/nomad-holepunch:<version> conf/holepunch.nomad.hcl
#   nomad job run -var image=<your registry>/nomad-holepunch:<version> \
#     -var 'allow=["METRICS","AGENT_HEALTH","NODES"]' conf/holepunch.nomad.hcl
#
# Needs Nomad 1.7.0 or later: the named identity with a `ttl` (below) came in
# 1.7.0, `node_pool` in 1.6.0, the Task API socket in 1.5.0 (hashicorp/nomad
# CHANGELOG-unsupported.md).
# With ACLs on, avoid Nomad 2.0.1: it refused client RPCs for allocations of
# jobs in node_pool "all" (acl/acl.go AllowClientOp; GH-27973, fixed in 2.0.2).
#
# `image` has no default on purpose. The docker driver pulls an image that is
# not on the node (and always a `latest` tag) from the registry its name
# points at: Docker Hub's library/ for a bare name such as
# nomad-holepunch:0.2.0, which has no such image, so every allocation would
# fail and retry (hashicorp/nomad drivers/docker/driver.go, createImage).
# Without -var image, Nomad refuses the job with `Unset variable "image"`
# (jobspec2/types.variables.go).
#
# Groups beyond METRICS, AGENT_HEALTH and STATUS need an ACL policy attached
# to this job, named after it: see conf/holepunch-policy.hcl and the README.
#
# The Nomad agents must have `telemetry { prometheus_metrics = true }`, or
# /v1/metrics?format=prometheus answers 415.

variable "image" {
  type        = string
  description = "The nomad-holepunch container image in your registry, such as registry.example.com/nomad-holepunch:0.2.0 (build it from the Containerfile and push it)."
}

variable "port" {
  type        = number
  description = "The static port the proxy listens on, on every node."
  default     = 6120
}

variable "telemetry_port" {
  type        = number
  description = "The static port of the proxy's own metrics (HOLEPUNCH_TELEMETRY_BIND), on every node."
  default     = 6121
}

variable "allow" {
  type        = list(string)
  description = "The endpoint groups to open, as in HOLEPUNCH_ALLOW_<GROUP>: METRICS, AGENT_HEALTH, NODES, AGENT_SELF, AGENT_MEMBERS, AGENT_SERVERS, AGENT_HOST, AGENT_SCHEDULERS, PLUGINS, SERVICES, STATUS."
  default     = ["METRICS", "AGENT_HEALTH"]
}

job "holepunch" {
  type      = "system"
  node_pool = "all"

  # node_pool = "all" includes Windows clients, where this Linux image cannot
  # run; Nomad's own e2e system jobs pin the kernel the same way
  # (e2e/metrics/input/nomadagent.hcl).
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  group "holepunch" {
    # The group network is in host mode (Nomad's default), so the docker
    # driver puts the container on Docker's own bridge and publishes each
    # port on the node's address (NOMAD_IP_http), the address Nomad allocated
    # the port on (drivers/docker/driver.go, PortBindings). Inside the
    # container that address does not exist: the proxy binds 0.0.0.0 there.
    network {
      port "http" {
        static = var.port
        to     = var.port
      }
      port "telemetry" {
        static = var.telemetry_port
        to     = var.telemetry_port
      }
    }

    # A system job restarts in place; keep the node's endpoint up through
    # short hiccups instead of rescheduling.
    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "holepunch" {
      driver = "docker" # podman works the same way

      config {
        image = var.image
        ports = ["http", "telemetry"]
      }

      # The workload token: a named identity with a ttl, which the Nomad
      # client renews, and not the default identity, whose token never
      # changes while the allocation runs (read in hashicorp/nomad 2.0.5):
      # - Nomad refuses a ttl on the default identity ("ttl for default
      #   identity not yet supported", nomad/structs/workload_id.go Validate)
      #   and signs its token once per allocation (nomad/plan_apply.go
      #   signAllocIdentities): secrets/nomad_token and NOMAD_TOKEN hold the
      #   same token for as long as the allocation runs
      #   (client/allocrunner/taskrunner/identity_hook.go setDefaultToken).
      #   So this task exposes it nowhere: no env, no file.
      # - This identity is renewed at 50-55% of its remaining life
      #   (client/widmgr/widmgr.go renew, helper/retry.go ExpiryToRenewTime)
      #   and each new token is written to secrets/nomad_holepunch.jwt
      #   (identity_hook.go setAltToken), which the proxy re-reads.
      # - The Task API takes it as it takes the default one: it checks its
      #   signature and exp, and no audience (nomad/encrypter.go VerifyClaim),
      #   and its claims resolve to the ACL policies attached to this job
      #   (nomad/auth/auth.go ResolvePoliciesForClaims reads only the
      #   allocation and the task from them).
      # - ttl = "12h": renewed about every 6 h. A failed renewal is retried
      #   20 s later, then at doubling intervals up to one an hour (widmgr.go
      #   renew, helper/backoff.go Backoff). So after a loss of the Nomad
      #   servers of up to about 4 h, a retry renews the token before it
      #   expires; after a longer one it expires (45% of 12 h, 5.4 h, after
      #   the missed renewal at worst) and Nomad answers 500 until the next
      #   retry, up to an hour after the servers are back. (During the loss
      #   the Task API fails anyway: it asks a server about every request.)
      #   A client agent restart does not stop renewal: the client restores
      #   the saved tokens, renews at once one that expired (widmgr.go
      #   restoreStoredIdentities), and the task's identity hook watches it
      #   again. A copied token stops working 12 h after it was signed (plus
      #   Nomad's 60 s leeway), or when the allocation stops.
      #   conf/holepunch.rules.yml warns when a quarter of its life is left
      #   (3 h before, after 2.4 h or more of failed renewals), and /ready
      #   fails once Nomad refuses it.
      # - aud: the default identity's audience (nomad/structs/identity.go
      #   IdentityDefaultAud); Nomad warns about an identity without one.
      # - No env = true: Nomad cannot change a running task's environment.
      identity {
        name = "holepunch"
        aud  = ["nomadproject.io"]
        ttl  = "12h"
        file = true
      }

      # Every HOLEPUNCH_* variable is checked at start: a typo in a name or a
      # value stops the task with a message instead of running half-configured.
      env = merge(
        {
          # 0.0.0.0 inside the container: see the network block.
          HOLEPUNCH_BIND           = "0.0.0.0"
          HOLEPUNCH_PORT           = "${var.port}"
          HOLEPUNCH_TELEMETRY_BIND = "0.0.0.0:${var.telemetry_port}"
          HOLEPUNCH_TOKEN_FILE     = "${NOMAD_SECRETS_DIR}/nomad_holepunch.jwt"
          RUST_LOG                 = "info"
        },
        # Groups left out of var.allow are off, METRICS and AGENT_HEALTH included.
        {
          HOLEPUNCH_ALLOW_METRICS      = contains(var.allow, "METRICS") ? "true" : "false"
          HOLEPUNCH_ALLOW_AGENT_HEALTH = contains(var.allow, "AGENT_HEALTH") ? "true" : "false"
        },
        { for group in var.allow : "HOLEPUNCH_ALLOW_${upper(group)}" => "true" },
      )

      # In-flight requests get up to 5 s (the proxy's grace period) after
      # SIGTERM; Nomad must not SIGKILL it sooner.
      kill_timeout = "6s"

      resources {
        cpu    = 100
        memory = 64
      }

      service {
        provider = "nomad"
        name     = "holepunch"
        port     = "http"
        # conf/prometheus-nomad-sd.yml keeps services tagged "prometheus" and
        # takes the path and the format parameter from these tags.
        tags = [
          "prometheus",
          "metrics_path=/v1/metrics",
          "metrics_format=prometheus",
        ]

        check {
          name     = "alive"
          type     = "http"
          path     = "/health"
          interval = "10s"
          timeout  = "2s"
        }
      }

      # The proxy's own metrics, for conf/holepunch.rules.yml. The relabelling
      # in conf/prometheus-nomad-sd.yml gives them job="holepunch", the job
      # name conf/prometheus.yml uses, so the rules work with either.
      service {
        provider = "nomad"
        name     = "holepunch-telemetry"
        port     = "telemetry"
        tags = [
          "prometheus",
          "metrics_path=/metrics",
        ]
      }
    }
  }
}
