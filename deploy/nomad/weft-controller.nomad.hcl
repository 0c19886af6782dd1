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
        # the container (bridge network), apart from the node plugin's on the same client.
        args = [
          "--data-dir", "/local/weft",
          "--listen", "0.0.0.0",
          "--node-id", "${node.unique.name}",
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
