# Prometheus for Weft on Nomad: it finds every weftd through Consul (the weft-metrics service that
# weftd registers when started with --consul-addr: add
#   "--consul-addr", "${attr.unique.network.ip-address}:8500",
# to weft-node.nomad.hcl's args where a Consul agent runs on each client) and loads Weft's rules,
# which this job expects in the host volume "weft-prometheus-rules" (copy exporters/prometheus/rules/recording.yml and alerts.yml there; not the *.test.yml files, promtool's unit tests).
job "weft-prometheus" {
  datacenters = ["*"]
  type        = "service"

  group "prometheus" {
    network {
      port "http" {
        static = 9090
      }
    }

    volume "rules" {
      type      = "host"
      source    = "weft-prometheus-rules"
      read_only = true
    }

    service {
      name     = "weft-prometheus"
      port     = "http"
      provider = "consul"
      check {
        type     = "http"
        path     = "/-/healthy"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "prometheus" {
      driver = "docker"

      config {
        image        = "prom/prometheus:v2.53.2"
        network_mode = "host"
        args = [
          "--config.file=/local/prometheus.yml",
          "--web.listen-address=:${NOMAD_PORT_http}",
        ]
      }

      volume_mount {
        volume      = "rules"
        destination = "/etc/prometheus/weft"
      }

      # The scrape job of deploy/prometheus/consul-sd.yml, with the client's own Consul agent.
      template {
        destination = "local/prometheus.yml"
        change_mode = "signal"
        change_signal = "SIGHUP"
        data        = <<-EOT
          global:
            scrape_interval: 15s
            evaluation_interval: 15s
          alerting:
            alertmanagers:
              - consul_sd_configs:
                  - server: {{ env "attr.unique.network.ip-address" }}:8500
                    services: [alertmanager]
          rule_files:
            - /etc/prometheus/weft/recording.yml
            - /etc/prometheus/weft/alerts.yml
          scrape_configs:
            - job_name: weft
              metrics_path: /metrics
              honor_labels: true
              consul_sd_configs:
                - server: {{ env "attr.unique.network.ip-address" }}:8500
                  services: [weft-metrics]
              relabel_configs:
                - source_labels: [__meta_consul_service_metadata_node_id]
                  target_label: node
                - source_labels: [__meta_consul_service_metadata_zone]
                  regex: (.+)
                  target_label: zone
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
