# nomad-holepunch as a system job: one proxy on every Linux node, serving that
# node's Nomad agent API (metrics and agent health by default) on port 6120,
# and its own metrics on port 6121.
#
#   nomad job run -var image=<your registry>/nomad-holepunch:<version> conf/holepunch.nomad.hcl
#   nomad job run -var image=<your registry>/nomad-holepunch:<version> \
#     -var 'allow=["METRICS","AGENT_HEALTH","NODES"]' conf/holepunch.nomad.hcl
#
# Needs Nomad 1.6.0 or later: `node_pool` came in 1.6.0, the Task API socket
# and `identity { env, file }` in 1.5.0 (hashicorp/nomad CHANGELOG-unsupported.md).
# A named identity with a `ttl`, renewed and rewritten in its file, needs 1.7.0.
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

      # The workload token: env for the Go original's NOMAD_TOKEN, the file
      # for HOLEPUNCH_TOKEN_FILE, which the proxy re-reads whenever Nomad
      # rewrites it (at each task start, and at each renewal of an identity
      # with a ttl, Nomad 1.7+). A one-line block holds only one argument in
      # HCL2, so the two go on separate lines.
      identity {
        env  = true
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
          HOLEPUNCH_TOKEN_FILE     = "${NOMAD_SECRETS_DIR}/nomad_token"
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
