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
# With tls = true, the job needs Nomad 1.9.6 or later: its checks then set
# tls_skip_verify, which Nomad refused on its own (provider = "nomad")
# checks before 1.9.6 ("tls_skip_verify may only be set for Consul service
# checks", nomad/structs/services.go, validateNomad) and honours from 1.9.6
# (client/serviceregistration/checks/client.go, checkHTTP; GH-24781).
#
# Updates roll one node at a time (the `update` block), and each node's proxy
# is gone for a short gap while its replacement starts: docs/upgrades.md
# says how long, and why -u cannot bridge it inside Nomad.
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

# The README's safe defaults. Each is off (as without this job's variables)
# until set.

variable "allow_from" {
  type        = list(string)
  description = "HOLEPUNCH_ALLOW_FROM: the IP addresses and CIDR ranges that may use the proxy, such as [\"10.0.0.0/8\"]; empty for any address. Nomad's checks of /health and /ready are never refused."
  default     = []
}

variable "allowed_hosts" {
  type        = list(string)
  description = "HOLEPUNCH_ALLOWED_HOSTS: the Host names clients may use (and *.suffix patterns), against DNS rebinding, such as [\"localhost\"]; empty for any."
  default     = []
}

variable "client_tokens" {
  type        = bool
  description = "Require a bearer token from clients (HOLEPUNCH_CLIENT_TOKEN_FILE), one per line in the item client_tokens of the Nomad variable at var.secrets_path."
  default     = false
}

variable "tls" {
  type        = bool
  description = "TLS on the listener (HOLEPUNCH_TLS_CERT_FILE and HOLEPUNCH_TLS_KEY_FILE), from the items tls_cert and tls_key (PEM) of the Nomad variable at var.secrets_path. Needs Nomad 1.9.6 or later (the checks' tls_skip_verify)."
  default     = false
}

variable "secrets_path" {
  type        = string
  description = "The Nomad variable holding client_tokens, tls_cert and tls_key. The task may read nomad/jobs/<job> without a policy (acl/acl.go, matchingVariablesCapabilitySet)."
  default     = "nomad/jobs/holepunch"
}

variable "host_network" {
  type        = string
  description = "The client host_network both ports are published on; \"default\" is the node's address. Name a private network defined on the clients (client { host_network \"NAME\" { ... } }) to keep the ports off the others."
  default     = "default"
}

job "holepunch" {
  type      = "system"
  node_pool = "all"

  # One node at a time. Without this block, Nomad before 1.11 replaced every
  # node's proxy in one plan (scheduler/scheduler_system.go at v1.10.0:
  # limit := len(diff.update) unless Update.Rolling(), which needs
  # max_parallel and stagger). It is the job's block, not the group's,
  # because before 1.11 the scheduler reads only the job's (Job.Update, set
  # from the job-level block by command/agent/job_endpoint.go); the API
  # copies it into the group (api/tasks.go, TaskGroup.Canonicalize), where
  # 1.11 and later read the rest. Valid from 1.6.0 on (nomad/structs,
  # UpdateStrategy.Validate: min_healthy_time < healthy_deadline <
  # progress_deadline, stagger > 0). The numbers are worked out in
  # docs/upgrades.md.
  update {
    max_parallel = 1
    # Before 1.11, system jobs have no deployments: the next node is taken
    # `stagger` after the last, healthy or not (NextRollingEval). The
    # per-node gap (at most about 2m20s) plus 45 s for Prometheus to see the
    # new proxy plus one rule evaluation (1m), 4m05s, rounded up: so that
    # between two nodes every proxy is seen again and
    # HolepunchNodeWithoutProxy's 5 minutes start over.
    stagger = "5m"
    # 1.11 and later: a deployment, healthy when every check passes (the
    # /ready check: token loaded, Task API socket answering) and has for
    # min_healthy_time (client/allochealth/tracker.go, watchNomadEvents).
    # 2 minutes: Prometheus sees the new proxy within 45 s (a discovery
    # refresh and a scrape), and a rule evaluation (1m) must then see every
    # node served before the next one goes.
    health_check      = "checks"
    min_healthy_time  = "2m"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
  }

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
    #
    # Docker publishes each port on that address only, not on 0.0.0.0
    # (mapping.HostIP in createContainerConfig): the address of
    # var.host_network, the node's own by default. Prometheus needs both
    # ports from where it runs, and nothing else does.
    network {
      port "http" {
        static       = var.port
        to           = var.port
        host_network = var.host_network
      }
      port "telemetry" {
        static       = var.telemetry_port
        to           = var.telemetry_port
        host_network = var.host_network
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
        # The pull happens after the old allocation stopped (see the update
        # block): this bounds that part of the node's gap. The image is
        # small; the docker driver's default is 5m (drivers/docker/config.go).
        image_pull_timeout = "2m"
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
        # The safe defaults. An empty value is unset, as without them (each
        # variable is set, so no conditional object is needed).
        {
          HOLEPUNCH_ALLOW_FROM        = join(",", var.allow_from)
          HOLEPUNCH_ALLOWED_HOSTS     = join(",", var.allowed_hosts)
          HOLEPUNCH_CLIENT_TOKEN_FILE = var.client_tokens ? "${NOMAD_SECRETS_DIR}/client-tokens" : ""
          HOLEPUNCH_TLS_CERT_FILE     = var.tls ? "${NOMAD_SECRETS_DIR}/tls.crt" : ""
          HOLEPUNCH_TLS_KEY_FILE      = var.tls ? "${NOMAD_SECRETS_DIR}/tls.key" : ""
        },
      )

      # The files the proxy re-reads when they change (so no restart:
      # change_mode noop), from the Nomad variable at var.secrets_path.
      # Create it before turning them on: a template waits for it.
      dynamic "template" {
        for_each = var.client_tokens ? ["client-tokens"] : []
        content {
          destination = "secrets/client-tokens"
          change_mode = "noop"
          perms       = "400"
          # The image's user: Nomad sets a rendered file's owner only when
          # uid/gid are set (client/allocrunner/taskrunner/template/template.go);
          # otherwise it belongs to the client agent (root), and a 0400 file
          # would be unreadable to the proxy.
          uid         = 65532
          gid         = 65532
          data        = "{{ with nomadVar \"${var.secrets_path}\" }}{{ .client_tokens }}{{ end }}"
        }
      }

      # secrets/tls.crt from the item tls_cert, secrets/tls.key from tls_key.
      dynamic "template" {
        for_each = var.tls ? ["cert", "key"] : []
        content {
          destination = "secrets/tls.${template.value == "cert" ? "crt" : "key"}"
          change_mode = "noop"
          perms       = "400"
          uid         = 65532
          gid         = 65532
          data        = "{{ with nomadVar \"${var.secrets_path}\" }}{{ .tls_${template.value} }}{{ end }}"
        }
      }

      # Stopping. Nomad deregisters the services first (service_hook.go,
      # PreKilling), waits shutdown_delay, then sends kill_signal and after
      # kill_timeout SIGKILL (client/allocrunner/taskrunner/task_runner.go,
      # handleKill). SIGTERM, not SIGINT: Pingora cuts the requests in
      # flight on SIGINT and lets them finish on SIGTERM (pingora-core
      # 0.9.1 server/mod.rs, main_loop). The docker driver stops with the
      # image's STOPSIGNAL (SIGTERM when none) unless kill_signal is set
      # (drivers/docker/handle.go, Kill); set, it says so for every driver.
      kill_signal = "SIGTERM"
      # Above the proxy's grace period (5 s, startup::DEFAULT_GRACE_SECONDS
      # and conf/holepunch.yaml) plus Pingora's 1 s to stop its runtimes;
      # the proxy exits as soon as its requests are done. Nomad's client
      # caps it at its max_kill_timeout (30 s by default).
      kill_timeout = "10s"
      # A scrape already on its way when the service is deregistered (a
      # discovering Prometheus re-reads services every 30 s) is still
      # answered. Short, because the replacement cannot start on this static
      # port until this allocation has stopped (client/allocwatcher): every
      # second here is a second of the node's gap.
      shutdown_delay = "5s"

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
          name            = "alive"
          type            = "http"
          protocol        = var.tls ? "https" : "http"
          tls_skip_verify = var.tls
          path            = "/health"
          interval        = "10s"
          timeout         = "2s"
        }

        # The check the update block's health waits for: 200 once the
        # workload token is loaded and the Task API socket accepts a
        # connection, costing the Nomad servers nothing. Neither check needs
        # a client token or an address in allow_from.
        check {
          name            = "ready"
          type            = "http"
          protocol        = var.tls ? "https" : "http"
          tls_skip_verify = var.tls
          path            = "/ready"
          interval        = "10s"
          timeout         = "2s"
        }
      }

      # The proxy's own metrics, for conf/holepunch.rules.yml. The relabelling
      # in conf/prometheus-nomad-sd.yml gives them job="holepunch", the job
      # name conf/prometheus.yml uses, so the rules read the same series with
      # either. What differs is a stopped proxy: with conf/prometheus.yml its
      # target stays and reads up == 0 (HolepunchDown); with discovery Nomad
      # deregisters this service and the target vanishes
      # (HolepunchNodeWithoutProxy).
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
