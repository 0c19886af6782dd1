/*
 * CRC-32C (Castagnoli) of data blocks, for the per-4 KiB checksums of the storage engine.
 * Uses the CPU's CRC32 instruction (x86 SSE4.2, ARMv8 CRC) when present, else a table.
 * Node's zlib.crc32 manages ~2 GB/s on 4 KiB blocks here; the instruction is several times faster,
 * and checksums are on the path of every read and write.
 */
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <nmmintrin.h>
#define WEFT_X86 1
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#define WEFT_ARM 1
#endif

#define POLY 0x82F63B78u /* reflected: bit 31 is the coefficient of x^0 */
#define SPLIT_BYTES 4096 /* the length one buffer is checksummed in three parts at once (a block) */
#define SPLIT_PART ((SPLIT_BYTES / 3) & ~(size_t)7) /* the first two parts' length; the third has the rest */

static uint32_t table[256];
static int hardware;

#if defined(WEFT_X86)
/* x^(8n) modulo the polynomial for the lengths of the last two parts of a SPLIT_BYTES buffer. */
static uint32_t shift_last_two, shift_last;

/* a * b modulo the polynomial. */
static uint32_t multiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 0; i < 32; i++, a <<= 1) {
    if (a & 0x80000000u) product ^= b;
    b = (b >> 1) ^ (POLY & (0u - (b & 1u))); /* b * x */
  }
  return product;
}

/* x^(8 * bytes) modulo the polynomial: what advancing a register over that many zero bytes multiplies it by. */
static uint32_t x_to_bytes(size_t bytes) {
  uint32_t r = 0x80000000u;
  for (size_t i = 0; i < 8 * bytes; i++) r = (r >> 1) ^ (POLY & (0u - (r & 1u)));
  return r;
}
#endif

static void init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
    table[i] = c;
  }
#if defined(WEFT_X86)
  unsigned a, b, c, d;
  hardware = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
  shift_last_two = x_to_bytes(SPLIT_BYTES - SPLIT_PART);
  shift_last = x_to_bytes(SPLIT_BYTES - 2 * SPLIT_PART);
#elif defined(WEFT_ARM)
  hardware = 1;
#endif
}

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t n) {
  while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(WEFT_X86)
__attribute__((target("sse4.2"))) static uint32_t crc_hardware(uint32_t crc, const uint8_t *p, size_t n) {
  uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  uint32_t c32 = (uint32_t)c;
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}
#elif defined(WEFT_ARM)
static uint32_t crc_hardware(uint32_t crc, const uint8_t *p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    crc = __crc32cd(crc, v);
  }
  while (n--) crc = __crc32cb(crc, *p++);
  return crc;
}
#else
static uint32_t crc_hardware(uint32_t crc, const uint8_t *p, size_t n) { return crc_table(crc, p, n); }
#endif

#if defined(WEFT_X86)
/*
 * Three chains at once, over the first n & ~7 bytes of a, b and c, from the registers in r: the CRC
 * instruction takes 3 cycles but can start every cycle, so three independent chains run in about
 * the time of one.
 */
__attribute__((target("sse4.2"))) static void three_chains(const uint8_t *a, const uint8_t *b, const uint8_t *c, size_t n, uint64_t r[3]) {
  uint64_t ra = r[0], rb = r[1], rc = r[2]; /* in registers for the loop */
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t va, vb, vc;
    memcpy(&va, a + i, 8);
    memcpy(&vb, b + i, 8);
    memcpy(&vc, c + i, 8);
    ra = _mm_crc32_u64(ra, va);
    rb = _mm_crc32_u64(rb, vb);
    rc = _mm_crc32_u64(rc, vc);
  }
  r[0] = ra;
  r[1] = rb;
  r[2] = rc;
}

/* Three blocks at once. */
static void crc_hardware3(const uint8_t *a, const uint8_t *b, const uint8_t *c, size_t n, uint32_t *out) {
  uint64_t r[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
  three_chains(a, b, c, n, r);
  size_t tail = n & ~(size_t)7;
  out[0] = crc_hardware((uint32_t)r[0], a + tail, n - tail) ^ 0xffffffffu;
  out[1] = crc_hardware((uint32_t)r[1], b + tail, n - tail) ^ 0xffffffffu;
  out[2] = crc_hardware((uint32_t)r[2], c + tail, n - tail) ^ 0xffffffffu;
}
#endif

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
  return hardware ? crc_hardware(crc, p, n) : crc_table(crc, p, n);
}

#if defined(WEFT_X86)
/*
 * One SPLIT_BYTES buffer in three parts A|B|C at once, for about twice the speed of one chain. A
 * register is linear in what it starts from, and running it over n zero bytes multiplies it by
 * x^(8n): so the register after A|B|C is ra * x^(8(|B|+|C|)) ^ rb * x^(8|C|) ^ rc, where ra is run
 * over A from the initial value and rb, rc over B and C from 0.
 */
static uint32_t crc_split(const uint8_t *p) {
  const uint8_t *c = p + 2 * SPLIT_PART;
  uint64_t r[3] = {0xffffffffu, 0, 0};
  three_chains(p, p + SPLIT_PART, c, SPLIT_PART, r);
  uint32_t last = crc_hardware((uint32_t)r[2], c + SPLIT_PART, SPLIT_BYTES - 3 * SPLIT_PART);
  return (multiply((uint32_t)r[0], shift_last_two) ^ multiply((uint32_t)r[1], shift_last) ^ last) ^ 0xffffffffu;
}
#endif

static uint32_t crc32c(const uint8_t *p, size_t n) {
#if defined(WEFT_X86)
  if (hardware && n == SPLIT_BYTES) return crc_split(p);
#endif
  return crc_update(0xffffffffu, p, n) ^ 0xffffffffu;
}

static napi_status typed_array(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  napi_status s = napi_get_typedarray_info(env, value, &type, length, data, &buffer, &offset);
  if (s != napi_ok) return s;
  return type == want ? napi_ok : napi_invalid_arg;
}

/* Checksums of `blocks` whole blocks starting at p, into out[0..blocks). */
static void whole_blocks(const uint8_t *p, size_t blocks, uint32_t blockBytes, uint32_t *out) {
  size_t i = 0;
#if defined(WEFT_X86)
  if (hardware) {
    for (; i + 3 <= blocks; i += 3) {
      crc_hardware3(p + i * blockBytes, p + (i + 1) * blockBytes, p + (i + 2) * blockBytes, blockBytes, out + i);
    }
  }
#endif
  for (; i < blocks; i++) out[i] = crc32c(p + i * blockBytes, blockBytes);
}

/* crc32cBlocks(data: Uint8Array, blockBytes: number, out: Uint32Array): fills out[i] with the checksum of block i. */
static napi_value crc32c_blocks(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  void *data, *out;
  size_t length, outLength;
  uint32_t blockBytes;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      typed_array(env, argv[0], napi_uint8_array, &data, &length) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &blockBytes) != napi_ok || blockBytes == 0 ||
      typed_array(env, argv[2], napi_uint32_array, &out, &outLength) != napi_ok ||
      length % blockBytes != 0 || outLength < length / blockBytes) {
    napi_throw_type_error(env, NULL, "crc32cBlocks(data: Uint8Array, blockBytes: number, out: Uint32Array): bad arguments");
    return NULL;
  }
  whole_blocks(data, length / blockBytes, blockBytes, out);
  return NULL;
}

/*
 * crc32cPieces(pieces: Uint8Array[], blockBytes: number, out: Uint32Array): like crc32cBlocks over
 * the concatenation of the pieces, without concatenating them. A block may span several pieces
 * (a write's data as it came off the socket); its checksum then carries over from piece to piece.
 * The pieces' total length must be a multiple of blockBytes.
 */
static napi_value crc32c_pieces(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  void *outData;
  size_t outLength;
  uint32_t count, blockBytes;
  bool isArray = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_is_array(env, argv[0], &isArray) != napi_ok || !isArray ||
      napi_get_array_length(env, argv[0], &count) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &blockBytes) != napi_ok || blockBytes == 0 ||
      typed_array(env, argv[2], napi_uint32_array, &outData, &outLength) != napi_ok) {
    goto bad;
  }
  uint32_t *out = outData;
  size_t block = 0;      /* index of the block being checksummed */
  size_t filled = 0;     /* bytes of that block seen so far (in earlier pieces) */
  uint32_t crc = 0xffffffffu;
  for (uint32_t k = 0; k < count; k++) {
    napi_value piece;
    void *data;
    size_t length;
    if (napi_get_element(env, argv[0], k, &piece) != napi_ok ||
        typed_array(env, piece, napi_uint8_array, &data, &length) != napi_ok) {
      goto bad;
    }
    const uint8_t *p = data;
    if (filled > 0) { /* finish the block that began in an earlier piece */
      size_t n = length < blockBytes - filled ? length : blockBytes - filled;
      crc = crc_update(crc, p, n);
      p += n;
      length -= n;
      filled += n;
      if (filled < blockBytes) continue;
      if (block >= outLength) goto bad;
      out[block++] = crc ^ 0xffffffffu;
      filled = 0;
    }
    size_t blocks = length / blockBytes;
    if (block + blocks > outLength) goto bad;
    whole_blocks(p, blocks, blockBytes, out + block);
    block += blocks;
    p += blocks * blockBytes;
    length -= blocks * blockBytes;
    if (length > 0) { /* a block that continues in the next piece */
      crc = crc_update(0xffffffffu, p, length);
      filled = length;
    }
  }
  if (filled == 0) return NULL;
bad:
  napi_throw_type_error(env, NULL, "crc32cPieces(pieces: Uint8Array[], blockBytes: number, out: Uint32Array): bad arguments");
  return NULL;
}

/* crc32c(data: Uint8Array): number */
static napi_value crc32c_one(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  void *data;
  size_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      typed_array(env, argv[0], napi_uint8_array, &data, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "crc32c(data: Uint8Array): bad arguments");
    return NULL;
  }
  napi_create_uint32(env, crc32c(data, length), &result);
  return result;
}

static napi_value module_init(napi_env env, napi_value exports) {
  init();
  napi_property_descriptor props[] = {
    {"crc32c", NULL, crc32c_one, NULL, NULL, NULL, napi_default, NULL},
    {"crc32cBlocks", NULL, crc32c_blocks, NULL, NULL, NULL, napi_default, NULL},
    {"crc32cPieces", NULL, crc32c_pieces, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
