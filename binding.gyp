{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": ["fabric/store/native/crc32c.c"],
      "cflags": ["-O3"]
    },
    {
      "target_name": "weft_flock",
      "sources": ["fabric/store/native/flock.c"],
      "cflags": ["-O2"]
    },
    {
      "target_name": "weft_io",
      "sources": ["fabric/store/native/write-spans.c"],
      "cflags": ["-O2"]
    },
    {
      "target_name": "weft_loop",
      "sources": ["adapters/csi/attach/native/loop-size.c"],
      "cflags": ["-O2"]
    }
  ]
}
