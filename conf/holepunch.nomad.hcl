# nomad-holepunch as a system job: one proxy on every node, serving that
# node's Nomad agent API (metrics and agent health by default) on port 6120.
#
#   nomad job run conf/holepunch.nomad.hcl
#   nomad job run -var 'allow=["METRICS","AGENT_HEALTH","NODES"]' conf/holepunch.nomad.hcl
#
# Groups beyond METRICS, AGENT_HEALTH and STATUS need an ACL policy attached
# to the job: see conf/holepunch-policy.hcl and the README.
#
# The Nomad agents must have `telemetry { prometheus_metrics = true }`, or
# /v1/metrics?format=prometheus answers 415.

variable "image" {
  type        = string
  description = "The nomad-holepunch container image (build it from the Containerfile and push it to your registry)."
  default     = "nomad-holepunch:0.2.0"
}

variable "port" {
  type        = number
  description = "The static port the proxy listens on, on every node."
  default     = 6120
}

variable "allow" {
  type        = list(string)
  description = "The endpoint groups to open, as in HOLEPUNCH_ALLOW_<GROUP>: METRICS, AGENT_HEALTH, NODES, AGENT_SELF, AGENT_MEMBERS, AGENT_SERVERS, AGENT_HOST, AGENT_SCHEDULERS, PLUGINS, SERVICES, STATUS."
  default     = ["METRICS", "AGENT_HEALTH"]
}

job "holepunch" {
  type      = "system"
  node_pool = "all"

  group "holepunch" {
    network {
      port "http" {
        static = var.port
        to     = var.port
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
        ports = ["http"]
      }

      # The workload token: env for the Go original's NOMAD_TOKEN, the file
      # because Nomad rewrites it when it rotates the token and the proxy
      # re-reads it.
      identity {
        env  = true
        file = true
      }

      # Every HOLEPUNCH_* variable is checked at start: a typo in a name or a
      # value stops the task with a message instead of running half-configured.
      env = merge(
        {
          HOLEPUNCH_BIND       = "0.0.0.0"
          HOLEPUNCH_PORT       = "${var.port}"
          HOLEPUNCH_TOKEN_FILE = "${NOMAD_SECRETS_DIR}/nomad_token"
          RUST_LOG             = "info"
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
    }
  }
}
