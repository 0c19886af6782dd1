# The Weft controller plugin: weftd serving the CSI controller service (create, delete, snapshot,
# expand) that `nomad volume create`, `nomad volume snapshot create` and registrations call.
job "weft-controller" {
  datacenters = ["*"]
  type        = "service"

  group "controller" {
    count = 1

    task "weftd" {
      driver = "docker"
      # weftd's stop drains its clients and flushes its pools; Nomad's default of 5 s cuts that short
      # with a SIGKILL, as after a crash. A client's max_kill_timeout (default 30s) caps it.
      kill_timeout = "30s"

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
          # The cluster store, from the template below (as in weft-node.nomad.hcl).
          "--store", "${WEFT_STORE}",
          # No pool: it places every volume through the cluster (the primary on the node the volume's
          # topology_request names first) and holds no copy; any client's node plugin attaches it.
          "--pool", "none",
          "--csi-endpoint", "unix:///csi/csi.sock",
          "--csi-role", "controller",
        ]
      }

      # --store: the etcd members that etcd.nomad.hcl registers (Nomad's service discovery); run that
      # job first. "noop": when a member re-registers (at its fixed address), weftd keeps running on the
      # endpoints it started with rather than restarting, and with it every volume it serves.
      template {
        data        = <<-EOT
          WEFT_STORE=etcd://{{ range $i, $member := nomadService "weft-etcd" }}{{ if $i }},{{ end }}{{ $member.Address }}:{{ $member.Port }}{{ end }}
        EOT
        destination = "local/store.env"
        env         = true
        change_mode = "noop"
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
