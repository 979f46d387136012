# nomad-holepunch as a system job without containers: the binary installed on
# each Linux node, run by the raw_exec driver through
# conf/holepunch-entrypoint.sh, so that a change to its Pingora settings (a
# Nomad variable) is taken over with no failed request (docs/upgrades.md).
#
#   nomad var put nomad/jobs/holepunch threads=1
#   nomad job run conf/holepunch-raw-exec.nomad.hcl
#
# Needs Nomad 1.7.0 or later (the named identity with a `ttl` came in 1.7.0,
# `node_pool` in 1.6.0; hashicorp/nomad CHANGELOG-unsupported.md), the
# raw_exec plugin enabled on the clients, and
# the binary at var.binary on every node. Groups beyond METRICS, AGENT_HEALTH
# and STATUS need conf/holepunch-policy.hcl attached to this job.
#
# raw_exec looks a relative command up in the task's local/ directory, then
# in the task directory, and runs it there (lookupBin and TaskDir in
# drivers/shared/executor/executor.go), so local/holepunch-entrypoint.sh and
# -c local/holepunch.yaml resolve; the upgrade socket and pid file go to
# $NOMAD_TASK_DIR.

variable "binary" {
  type        = string
  description = "Where nomad-holepunch is installed on every node."
  default     = "/usr/local/bin/nomad-holepunch"
}

variable "port" {
  type        = number
  description = "The static port the proxy listens on, on every node."
  default     = 6120
}

variable "telemetry_port" {
  type        = number
  description = "The static port of the proxy's own metrics, on every node."
  default     = 6121
}

job "holepunch" {
  type      = "system"
  node_pool = "all"

  # One node at a time: see the update block of conf/holepunch.nomad.hcl,
  # whose reasons hold here. No image is pulled, so a node's gap is shorter.
  update {
    max_parallel      = 1
    stagger           = "5m"
    health_check      = "checks"
    min_healthy_time  = "2m"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
  }

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  group "holepunch" {
    network {
      port "http" {
        static = var.port
      }
      port "telemetry" {
        static = var.telemetry_port
      }
    }

    task "holepunch" {
      driver = "raw_exec"

      # The script reaches local/ through this template: file() reads it
      # when `nomad job run` parses the job, relative to the job file's
      # directory (jobspec2/parse.go: BaseDir is the file's directory), and
      # Nomad writes it into the task's local/ directory before the task
      # starts. The script has no {{ }}, which the template would interpret.
      template {
        destination = "local/holepunch-entrypoint.sh"
        perms       = "755"
        data        = file("holepunch-entrypoint.sh")
      }

      # The Pingora settings, from the Nomad variable nomad/jobs/holepunch
      # (create it first, as in the usage lines above). When it changes,
      # Nomad re-renders the file and sends SIGHUP: the entrypoint hands the
      # listening socket to a new process (-u).
      template {
        destination   = "local/holepunch.yaml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          version: 1
          {{ with nomadVar "nomad/jobs/holepunch" }}threads: {{ .threads }}{{ end }}
        EOT
      }

      config {
        command = "local/holepunch-entrypoint.sh"
        args    = [var.binary, "-c", "local/holepunch.yaml"]
      }

      # The workload token: a named identity the client renews, as in
      # conf/holepunch.nomad.hcl, which gives the sources. ttl = "12h":
      # renewed about every 6 h (client/widmgr/widmgr.go renew); the
      # default identity's token never changes while the allocation runs,
      # so it is exposed nowhere.
      identity {
        name = "holepunch"
        aud  = ["nomadproject.io"]
        ttl  = "12h"
        file = true
      }

      env {
        # raw_exec shares the node's network: bind the addresses Nomad
        # allocated the ports on, not 0.0.0.0. The telemetry port too: it is
        # reachable on that address alone.
        HOLEPUNCH_BIND           = "${NOMAD_IP_http}"
        HOLEPUNCH_PORT           = "${NOMAD_PORT_http}"
        HOLEPUNCH_TELEMETRY_BIND = "${NOMAD_IP_telemetry}:${NOMAD_PORT_telemetry}"
        HOLEPUNCH_TOKEN_FILE     = "${NOMAD_SECRETS_DIR}/nomad_holepunch.jwt"
      }

      # raw_exec and exec are stopped with SIGINT unless kill_signal says
      # otherwise (drivers/shared/executor/executor.go, Shutdown: "Default
      # signal to SIGINT if not set"), and on SIGINT Pingora exits at once,
      # cutting the requests in flight (pingora-core 0.9.1 server/mod.rs,
      # main_loop: FastShutdown). The entrypoint passes SIGTERM on, and the
      # proxy lets them finish within its grace period.
      kill_signal = "SIGTERM"
      # Above the grace period (5 s: startup::DEFAULT_GRACE_SECONDS, unless
      # grace_period_seconds is set in the -c file) plus Pingora's 1 s.
      kill_timeout = "10s"
      # As in conf/holepunch.nomad.hcl: scrapes already on their way after
      # the service is deregistered are still answered; short, because the
      # replacement waits for this allocation to stop (client/allocwatcher).
      shutdown_delay = "5s"

      service {
        provider = "nomad"
        name     = "holepunch"
        port     = "http"
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

        check {
          name     = "ready"
          type     = "http"
          path     = "/ready"
          interval = "10s"
          timeout  = "2s"
        }
      }

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
