# Prometheus with nomad-holepunch as a prestart sidecar, so that Prometheus
# discovers services with nomad_sd_configs through the Task API, holding no
# Nomad token of its own. Nomad's own end-to-end suite runs the Go original
# this way.
#
#   nomad job run conf/prometheus-sidecar.nomad.hcl
#
# The sidecar binds 127.0.0.1 and allows only SERVICES (/v1/services and
# /v1/service/:name, GET only). A workload identity may read the services of
# its own namespace with no policy at all; other namespaces need the SERVICES
# block of conf/holepunch-policy.hcl, applied to this job.
#
# The group's bridge network gives both tasks one loopback (the CNI plugins
# must be installed on the clients, as for any bridge-mode job).

variable "holepunch_image" {
  type        = string
  description = "The nomad-holepunch container image."
  default     = "nomad-holepunch:0.2.0"
}

variable "prometheus_image" {
  type        = string
  description = "The Prometheus image: 2.37 or later for nomad_sd_configs."
  default     = "docker.io/prom/prometheus:v2.53.2"
}

job "prometheus" {
  type = "service"

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

      identity {
        env  = true
        file = true
      }

      env {
        HOLEPUNCH_BIND               = "127.0.0.1"
        HOLEPUNCH_PORT               = "6120"
        HOLEPUNCH_TOKEN_FILE         = "${NOMAD_SECRETS_DIR}/nomad_token"
        HOLEPUNCH_ALLOW_METRICS      = "false"
        HOLEPUNCH_ALLOW_AGENT_HEALTH = "false"
        HOLEPUNCH_ALLOW_SERVICES     = "true"
      }

      kill_timeout = "6s"

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

      # The same configuration as conf/prometheus-nomad-sd.yml (make test
      # checks that the two agree).
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
                # The "default" namespace. For others, add one entry per namespace
                # (namespace: NAME), and let the job read them (the SERVICES part of
                # conf/holepunch-policy.hcl).
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
EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
