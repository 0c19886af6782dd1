# The Weft node plugin: weftd on every Nomad client (a system job), serving its pools over NBD and
# the CSI node service to Nomad on the socket in mount_dir (Nomad expects csi.sock there).
# The bind mount of /var/lib/weft needs the docker plugin's `volumes { enabled = true }`.
job "weft-node" {
  datacenters = ["*"]
  type        = "system"

  group "node" {
    task "weftd" {
      driver = "docker"
      # weftd's stop drains its clients and flushes its pools; Nomad's default of 5 s cuts that short
      # with a SIGKILL, as after a crash. A client's max_kill_timeout (default 30s) caps it.
      kill_timeout = "30s"

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
          # The cluster store, from the template below (the same in weft-controller.nomad.hcl).
          "--store", "${WEFT_STORE}",
          "--csi-endpoint", "unix:///csi/csi.sock",
          "--csi-role", "node",
          # The client's own Nomad agent, asked for the job of each allocation a volume is published
          # for (the job label of weft_volume_info); a publish never waits on it for more than 5 s.
          "--nomad-addr", "http://${attr.unique.network.ip-address}:4646",
        ]

        mount {
          type     = "bind"
          source   = "/var/lib/weft"
          target   = "/var/lib/weft"
          readonly = false
        }

        # No mount of /dev here: Nomad bind-mounts the host's /dev into every CSI plugin task itself
        # (live, so the loop and nbd devices attaching makes later are seen), and Docker refuses a
        # second mount at the same point ("Duplicate mount point: /dev").
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

      # NOMAD_TOKEN for --nomad-addr when ACLs are on: the task's workload identity, which may read
      # allocations once a policy with read-job is attached to this job (README, Nomad).
      identity {
        env = true
      }

      csi_plugin {
        id        = "weft"
        type      = "node"
        mount_dir = "/csi"
        # Staging and publish targets: <this>/staging/... and <this>/per-alloc/<alloc id>/...;
        # weftd reads the allocation id from the latter for per-allocation metrics.
        stage_publish_base_dir = "/local/csi"
        # Nomad kills a plugin not healthy within this. After a crash weftd replays its journals and
        # rejoins the cluster before its socket answers, which may take minutes on a busy node (the
        # Kubernetes DaemonSet allows 10 minutes too); killed part way, it would start over.
        health_timeout = "10m"
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
