# Weft's cluster store for Nomad: a 3-member etcd on three clients, without Consul. Each member runs
# on the host network of a client that has the host volume "weft-etcd" (its data survives restarts and
# job updates), and registers its client URL as the Nomad service "weft-etcd", from which weft-node and
# weft-controller render their --store.
#
# etcd bootstraps from a static member list (--initial-cluster), so the members live at fixed
# addresses: give the three clients that run etcd the host volume, and replace the example addresses
# 10.0.0.1-3 in --initial-cluster with those clients' addresses (their attr.unique.network.ip-address).
# Each member is named after its client's address, which is how it finds itself in that list.
job "weft-etcd" {
  datacenters = ["*"]
  type        = "service"

  group "etcd" {
    count = 3

    # One member per client; a client without the host volume is never chosen.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Replace one member at a time, so that the other two keep the quorum.
    update {
      max_parallel     = 1
      min_healthy_time = "30s"
    }

    volume "data" {
      type      = "host"
      source    = "weft-etcd"
      read_only = false
    }

    network {
      port "client" {
        static = 2379
      }
      port "peer" {
        static = 2380
      }
    }

    service {
      name     = "weft-etcd"
      provider = "nomad"
      port     = "client"

      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "etcd" {
      driver = "docker"

      config {
        image        = "gcr.io/etcd-development/etcd:v3.5.17"
        network_mode = "host"
        command      = "/usr/local/bin/etcd"
        args = [
          "--name", "${attr.unique.network.ip-address}",
          "--data-dir", "/var/lib/etcd",
          "--listen-client-urls", "http://${attr.unique.network.ip-address}:2379",
          "--advertise-client-urls", "http://${attr.unique.network.ip-address}:2379",
          "--listen-peer-urls", "http://${attr.unique.network.ip-address}:2380",
          "--initial-advertise-peer-urls", "http://${attr.unique.network.ip-address}:2380",
          # Read only at the first start, when the data dir is empty; replace the example addresses.
          "--initial-cluster", "10.0.0.1=http://10.0.0.1:2380,10.0.0.2=http://10.0.0.2:2380,10.0.0.3=http://10.0.0.3:2380",
          "--initial-cluster-state", "new",
          "--initial-cluster-token", "weft-etcd",
          # Every node rewrites its record every 10 s: without compaction the history grows until the
          # backend reaches its quota and etcd refuses every write (failover, create, snapshot).
          "--auto-compaction-mode", "periodic",
          "--auto-compaction-retention", "1h",
          "--quota-backend-bytes", "1073741824",
        ]
      }

      volume_mount {
        volume      = "data"
        destination = "/var/lib/etcd"
        read_only   = false
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
