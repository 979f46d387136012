# Prometheus with nomad-holepunch as a prestart sidecar, so that Prometheus
# discovers services with nomad_sd_configs through the Task API, holding no
# Nomad token of its own.
#
#   nomad job run -var holepunch_image=<your registry>/nomad-holepunch:<version> \
#     conf/prometheus-sidecar.nomad.hcl
#
# Needs Nomad 1.7.0 or later (the sidecar's named identity with a `ttl`; the
# Task API socket came in 1.5.0; hashicorp/nomad CHANGELOG-unsupported.md), and
# Prometheus 2.37 or later for nomad_sd_configs.
#
# The sidecar binds 127.0.0.1 and allows only SERVICES (/v1/services and
# /v1/service/:name, GET only). This job needs no ACL policy: a workload
# identity may list and read the service registrations of any namespace it
# names (hashicorp/nomad acl/acl.go AllowServiceRegistrationReadList, whose
# isWorkload argument nomad/service_registration_endpoint.go sets). Only a
# wildcard `namespace=*` list needs read-job, and Prometheus cannot use one:
# it looks each listed service up in the namespace it was configured with.
# For more namespaces, add one nomad_sd_configs entry per namespace.
#
# The group's bridge network gives both tasks one loopback (the CNI plugins
# must be installed on the clients, as for any bridge-mode job), so 127.0.0.1
# is right here under the docker driver.
#
# Nomad's own e2e suite runs the Go original in a job of the same shape
# (e2e/metrics/input/prometheus.hcl), with differences: podman, the sidecar
# allowing everything (HOLEPUNCH_ALLOW_ALL = true), `identity { env = true }`
# (the default identity, never renewed), and the same templated region as below.

# No default: see the `image` variable of conf/holepunch.nomad.hcl.
variable "holepunch_image" {
  type        = string
  description = "The nomad-holepunch container image in your registry, such as registry.example.com/nomad-holepunch:0.2.0."
}

variable "prometheus_image" {
  type        = string
  description = "The Prometheus image: 2.37 or later for nomad_sd_configs."
  default     = "docker.io/prom/prometheus:v2.53.2"
}

job "prometheus" {
  type = "service"

  # The images are Linux images (as in e2e/metrics/input/prometheus.hcl).
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  group "prometheus" {
    count = 1

    network {
      mode = "bridge"
      port "ui" {
        to = 9090
      }
    }

    service {
      provider = "nomad"
      name     = "prometheus"
      port     = "ui"

      check {
        type     = "http"
        path     = "/-/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "holepunch" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image = var.holepunch_image
      }

      # A token the Nomad client renews, as in conf/holepunch.nomad.hcl
      # (whose comment gives the sources and the reasons for the ttl); the
      # default identity's token, which lasts as long as the allocation, is
      # exposed nowhere.
      identity {
        name = "holepunch"
        aud  = ["nomadproject.io"]
        ttl  = "12h"
        file = true
      }

      env {
        HOLEPUNCH_BIND               = "127.0.0.1"
        HOLEPUNCH_PORT               = "6120"
        HOLEPUNCH_TOKEN_FILE         = "${NOMAD_SECRETS_DIR}/nomad_holepunch.jwt"
        HOLEPUNCH_ALLOW_METRICS      = "false"
        HOLEPUNCH_ALLOW_AGENT_HEALTH = "false"
        HOLEPUNCH_ALLOW_SERVICES     = "true"
      }

      # Nomad stops the sidecar after Prometheus (client/allocrunner/
      # alloc_runner.go, killTasks: sidecars last), with SIGTERM: Pingora
      # would cut the requests in flight on the driver's SIGINT or on any
      # signal other than SIGTERM's graceful stop (pingora-core 0.9.1
      # server/mod.rs, main_loop). kill_timeout above the proxy's grace
      # period (5 s) plus Pingora's 1 s to stop its runtimes.
      kill_signal  = "SIGTERM"
      kill_timeout = "10s"

      resources {
        cpu    = 50
        memory = 32
      }
    }

    task "prometheus" {
      driver = "docker"

      config {
        image = var.prometheus_image
        args = [
          "--config.file=/local/prometheus.yml",
          "--storage.tsdb.path=/alloc/data/prometheus",
          "--web.listen-address=0.0.0.0:9090",
        ]
      }

      # The same configuration as conf/prometheus-nomad-sd.yml, except that
      # the region comes from the task's environment (make test checks that
      # the two agree).
      template {
        destination   = "local/prometheus.yml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        global:
          scrape_interval: 15s
          scrape_timeout: 10s

        scrape_configs:
          - job_name: nomad-services
            nomad_sd_configs:
              - server: http://127.0.0.1:6120
                # The task's own region, as Nomad's e2e does
                # (e2e/metrics/input/prometheus.hcl). Prometheus sends "global"
                # when unset, and the Task API checks the token in the region
                # the request names: in any other region, 500 and no targets.
                region: '{{ env "NOMAD_REGION" }}'
                # The "default" namespace. For others, add one entry per namespace
                # (namespace: NAME), each with its region; no ACL policy is needed.
                # namespace: "*" would not work: Prometheus looks each listed service
                # up by name in that namespace, and "*" matches none there.
                refresh_interval: 30s
            relabel_configs:
              # Only services tagged "prometheus". Tags arrive joined with commas,
              # with a comma at each end.
              - source_labels: [__meta_nomad_tags]
                regex: .*,prometheus,.*
                action: keep
              - source_labels: [__meta_nomad_tags]
                regex: .*,metrics_path=([^,]+),.*
                target_label: __metrics_path__
                replacement: $1
              - source_labels: [__meta_nomad_tags]
                regex: .*,metrics_format=([^,]+),.*
                target_label: __param_format
                replacement: $1
              - source_labels: [__meta_nomad_service]
                target_label: service
              - source_labels: [__meta_nomad_namespace]
                target_label: namespace
              - source_labels: [__meta_nomad_node_id]
                target_label: node_id
              - source_labels: [__meta_nomad_dc]
                target_label: datacenter
              # The proxy's own metrics (the holepunch-telemetry service of
              # conf/holepunch.nomad.hcl) as job="holepunch", the job name
              # conf/prometheus.yml gives them, so conf/holepunch.rules.yml reads the
              # same series with either. A stopped proxy differs: conf/prometheus.yml
              # keeps its target, which reads up == 0 (HolepunchDown); here Nomad
              # deregisters the stopped task's service (client/allocrunner/taskrunner/
              # service_hook.go, PreKilling and Exited) and its target vanishes, which
              # only HolepunchNodeWithoutProxy sees, from the servers' scrape below.
              - source_labels: [__meta_nomad_service]
                regex: holepunch-telemetry
                target_label: job
                replacement: holepunch

          # The Nomad servers' own metrics, for HolepunchNodeWithoutProxy
          # (nomad_nomad_heartbeat_active, the servers' count of live clients).
          # Servers register no service to discover: list every server by its own
          # address, not a load-balanced name (only the leader counts; the others
          # report 0). /v1/metrics needs no token; with TLS on the servers' HTTP
          # API, use https and tls_config.
          - job_name: nomad-servers
            metrics_path: /v1/metrics
            params:
              format: [prometheus]
            static_configs:
              - targets:
                  - nomad-server.example.com:4646
EOT
      }

      # Prometheus shuts down cleanly on SIGTERM (its TSDB head is kept in
      # the allocation's data directory); the docker driver would send the
      # image's STOPSIGNAL otherwise (drivers/docker/handle.go, Kill).
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
