# A Weft volume made by Nomad: `nomad volume create deploy/nomad/volume.hcl` has the weft plugin's
# controller create it (CreateVolume with these parameters) and registers it as "data".
# (`weft nomad volume create data --size 1GiB` does the same from the Weft side.)
id        = "data"
name      = "data"
type      = "csi"
plugin_id = "weft"

capacity_min = "1GiB"
capacity_max = "1GiB"

capability {
  access_mode     = "single-node-writer"
  attachment_mode = "file-system"
}

capability {
  access_mode     = "single-node-reader-only"
  attachment_mode = "file-system"
}

mount_options {
  fs_type     = "ext4"
  mount_flags = ["noatime"]
}

# CreateVolume's parameters: the service class, the number of copies, and whether the first copy
# goes to the node of the first allocation that claims the volume.
parameters {
  class    = "default"
  replicas = "1"
  locality = "true"
}
