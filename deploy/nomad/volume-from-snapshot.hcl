# A new volume with the content of a snapshot: after `nomad volume snapshot create data before`
# (CSI snapshot id "data@before"), `nomad volume create deploy/nomad/volume-from-snapshot.hcl`.
id          = "data-restored"
name        = "data-restored"
type        = "csi"
plugin_id   = "weft"
snapshot_id = "data@before"

capacity_min = "1GiB"

capability {
  access_mode     = "single-node-writer"
  attachment_mode = "file-system"
}

# No class parameter: the clone writes to the snapshot's service class. With
# parameters { class = "ssd" } it writes to ssd and reads what it has not rewritten from the snapshot's pool.
mount_options {
  fs_type = "ext4"
}
