{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": ["fabric/store/native/crc32c.c"],
      "cflags": ["-O3"]
    }
  ]
}
