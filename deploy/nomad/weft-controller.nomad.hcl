# The Weft controller plugin: weftd serving the CSI controller service (create, delete, snapshot,
# expand) that `nomad volume create`, `nomad volume snapshot create` and registrations call.
job "weft-controller" {
  datacenters = ["*"]
  type        = "service"

  group "controller" {
    count = 1

    task "weftd" {
      driver = "docker"

      config {
        image = "ghcr.io/weft-storage/weft:0.1.0"
        # The controller serves no volume data: its data dir is the task's own, its ports stay in
        # the container (bridge network), apart from the node plugin's on the same client; so it
        # advertises no address of the client's.
        args = [
          "--data-dir", "/local/weft",
          "--listen", "0.0.0.0",
          # Not the client's name: the node plugin on the same client is already a member under
          # that id, and the store refuses a second member with the same id.
          "--node-id", "weft-controller",
          # The same cluster store as weft-node.nomad.hcl.
          "--store", "etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379",
          # No pool: it places every volume through the cluster (the primary on the node the volume's
          # topology_request names first) and holds no copy; any client's node plugin attaches it.
          "--pool", "none",
          "--csi-endpoint", "unix:///csi/csi.sock",
          "--csi-role", "controller",
        ]
      }

      csi_plugin {
        id        = "weft"
        type      = "controller"
        mount_dir = "/csi"
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
