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

# Where its first copy (the primary) goes: Nomad creates the volume before any allocation claims it,
# so no consumer's node is known then. Name a client here to put the primary there (locality
# "true" below: the create fails if that node cannot hold it, rather than place it elsewhere);
# without it, placement chooses. Any client attaches the volume either way (its node forwards).
# topology_request {
#   required {
#     topology { segments { "topology.weft.io/node" = "client-1" } }
#   }
# }

# CreateVolume's parameters: the service class, the number of copies, and whether the primary must
# be on the node the topology request names.
parameters {
  class    = "default"
  replicas = "1"
  locality = "true"
}
