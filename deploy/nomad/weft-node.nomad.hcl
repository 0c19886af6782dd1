# The Weft node plugin: weftd on every Nomad client (a system job), serving its pools over NBD and
# the CSI node service to Nomad on the socket in mount_dir (Nomad expects csi.sock there).
# The bind mount of /var/lib/weft needs the docker plugin's `volumes { enabled = true }`.
job "weft-node" {
  datacenters = ["*"]
  type        = "system"

  group "node" {
    task "weftd" {
      driver = "docker"

      config {
        image        = "ghcr.io/weft-storage/weft:0.1.0"
        # Attach (nbd or nbdfuse + loop), mkfs and mount need the host's devices and mounts.
        privileged   = true
        # NBD, API and metrics listen on the client's own address: consumers attach through the
        # weftd of their node, and the other weftds reach it there.
        network_mode = "host"
        args = [
          "--data-dir", "/var/lib/weft",
          "--listen", "${attr.unique.network.ip-address}",
          "--advertise", "${attr.unique.network.ip-address}",
          "--node-id", "${node.unique.name}",
          # The cluster store: your etcd's client endpoints, the same in weft-controller.nomad.hcl.
          # Replace these examples (etcd runs outside this job: etcd's own packages or its Nomad job).
          "--store", "etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379",
          "--csi-endpoint", "unix:///csi/csi.sock",
          "--csi-role", "node",
        ]

        mount {
          type     = "bind"
          source   = "/var/lib/weft"
          target   = "/var/lib/weft"
          readonly = false
        }
      }

      csi_plugin {
        id        = "weft"
        type      = "node"
        mount_dir = "/csi"
        # Staging and publish targets: <this>/staging/... and <this>/per-alloc/<alloc id>/...;
        # weftd reads the allocation id from the latter for per-allocation metrics.
        stage_publish_base_dir = "/local/csi"
        health_timeout         = "60s"
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
