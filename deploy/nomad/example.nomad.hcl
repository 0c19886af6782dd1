# A job that uses the Weft volume "data" (deploy/nomad/volume.hcl): Nomad claims it for the
# allocation, the weft node plugin attaches, formats if blank and mounts it, and the task sees it
# at /data.
job "weft-demo" {
  datacenters = ["*"]

  group "app" {
    volume "data" {
      type            = "csi"
      source          = "data"
      attachment_mode = "file-system"
      access_mode     = "single-node-writer"
      read_only       = false
    }

    task "app" {
      driver = "docker"

      config {
        image   = "busybox:1.36"
        command = "sh"
        args    = ["-c", "date >> /data/hello.txt && sleep 3600"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
