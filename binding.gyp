{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": ["fabric/store/native/crc32c.c"],
      "cflags": ["-O3"]
    },
    {
      "target_name": "weft_file_calls",
      "sources": ["fabric/store/native/file-calls.c"],
      "cflags": ["-O2"]
    },
    {
      "target_name": "weft_loop",
      "sources": ["adapters/csi/attach/native/loop-size.c"],
      "cflags": ["-O2"]
    }
  ]
}
