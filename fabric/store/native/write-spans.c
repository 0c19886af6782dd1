/*
 * writevSpans(fd, pieces, position, spanBytes, done): writes the pieces one after another from
 * position with pwritev, split at every multiple of spanBytes in the file (each call covers one
 * span at most; short writes are retried), all in ONE call on libuv's thread pool. Node's own
 * fs.writev would need one thread-pool call per span, each handed out by the event loop: a large
 * write then took every thread at once, and one that hangs on a disk that stopped answering held
 * them all, the node's other pools and journal included. done(err) gets null, or an Error with
 * Node's `code` (ENOSPC, EIO, ...) and `syscall`; a failed write may have written part of the data.
 */
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>

/* The most iovecs one pwritev of a span takes; a span of more pieces is written in several calls. */
#define SPAN_IOVECS 64

typedef struct {
  napi_async_work work;
  napi_ref pieces_ref; /* keeps the buffers alive while the thread writes them */
  napi_ref done_ref;
  int fd;
  int64_t position;
  int64_t span_bytes;
  size_t count;
  struct iovec *iov;
  int error; /* errno of the failed call; 0 if all was written */
} write_job;

/* Writes job->iov in spans; sets job->error on failure. Runs on a thread-pool thread. */
static void write_spans(napi_env env, void *data) {
  (void)env;
  write_job *job = data;
  size_t piece = 0, offset = 0; /* where the next byte comes from */
  int64_t position = job->position;
  while (piece < job->count) {
    if (offset == job->iov[piece].iov_len) {
      piece++;
      offset = 0;
      continue;
    }
    size_t want = (size_t)(job->span_bytes - position % job->span_bytes);
    struct iovec iov[SPAN_IOVECS];
    int n = 0;
    size_t gathered = 0;
    for (size_t p = piece, o = offset; p < job->count && gathered < want && n < SPAN_IOVECS; p++, o = 0) {
      size_t take = job->iov[p].iov_len - o;
      if (take == 0) continue;
      if (take > want - gathered) take = want - gathered;
      iov[n].iov_base = (char *)job->iov[p].iov_base + o;
      iov[n].iov_len = take;
      n++;
      gathered += take;
    }
    ssize_t written = pwritev(job->fd, iov, n, position);
    if (written < 0) {
      if (errno == EINTR) continue;
      job->error = errno;
      return;
    }
    if (written == 0) {
      job->error = EIO; /* no progress and no error: give up rather than spin */
      return;
    }
    position += written;
    for (size_t left = (size_t)written; left > 0;) {
      size_t in_piece = job->iov[piece].iov_len - offset;
      if (left < in_piece) {
        offset += left;
        left = 0;
      } else {
        left -= in_piece;
        piece++;
        offset = 0;
      }
    }
  }
}

static void free_job(napi_env env, write_job *job) {
  if (!job) return;
  if (job->pieces_ref) napi_delete_reference(env, job->pieces_ref);
  if (job->done_ref) napi_delete_reference(env, job->done_ref);
  free(job->iov);
  free(job);
}

static void call_done(napi_env env, napi_status status, void *data) {
  write_job *job = data;
  napi_value done, global, argv[1];
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_global(env, &global);
  if (status != napi_ok) job->error = ECANCELED;
  if (job->error == 0) {
    napi_get_null(env, &argv[0]);
  } else {
    const char *name = uv_err_name(-job->error);
    char message[256];
    snprintf(message, sizeof message, "%s: %s, pwritev", name, uv_strerror(-job->error));
    napi_value code, text, syscall;
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
    napi_create_error(env, code, text, &argv[0]);
    napi_create_string_utf8(env, "pwritev", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, argv[0], "syscall", syscall);
  }
  napi_delete_async_work(env, job->work);
  free_job(env, job);
  napi_call_function(env, global, done, 1, argv, NULL);
}

static napi_value fail(napi_env env, write_job *job, const char *message) {
  free_job(env, job);
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/* A file position or span length: a non-negative safe integer (NaN or Infinity would become 0). */
static bool get_offset(napi_env env, napi_value value, int64_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok || !(number >= 0 && number <= 9007199254740991.0) || number != (double)(int64_t)number) return false;
  *out = (int64_t)number;
  return true;
}

static napi_value writev_spans(napi_env env, napi_callback_info info) {
  const char *usage = "writevSpans(fd: number, pieces: Uint8Array[], position: number, spanBytes: number, done: (err) => void): bad arguments";
  size_t argc = 5;
  napi_value argv[5];
  bool is_array;
  uint32_t count;
  napi_valuetype done_type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) return fail(env, NULL, usage);
  write_job *job = calloc(1, sizeof *job);
  if (!job) return fail(env, NULL, "writevSpans: out of memory");
  if (napi_get_value_int32(env, argv[0], &job->fd) != napi_ok || !get_offset(env, argv[2], &job->position) ||
      !get_offset(env, argv[3], &job->span_bytes) || job->span_bytes == 0 ||
      napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[1], &count) != napi_ok ||
      napi_typeof(env, argv[4], &done_type) != napi_ok || done_type != napi_function)
    return fail(env, job, usage);
  job->count = count;
  job->iov = calloc(count ? count : 1, sizeof *job->iov);
  if (!job->iov) return fail(env, job, "writevSpans: out of memory");
  /* The buffers are kept by an array of our own: the caller's may change before the write ends. */
  napi_value kept;
  if (napi_create_array_with_length(env, count, &kept) != napi_ok) return fail(env, job, "writevSpans: cannot keep the pieces");
  for (uint32_t i = 0; i < count; i++) {
    napi_value piece, buffer;
    napi_typedarray_type type;
    size_t length, byte_offset;
    void *bytes;
    bool is_typedarray;
    if (napi_get_element(env, argv[1], i, &piece) != napi_ok || napi_is_typedarray(env, piece, &is_typedarray) != napi_ok || !is_typedarray ||
        napi_get_typedarray_info(env, piece, &type, &length, &bytes, &buffer, &byte_offset) != napi_ok || type != napi_uint8_array ||
        napi_set_element(env, kept, i, piece) != napi_ok)
      return fail(env, job, usage);
    job->iov[i].iov_base = bytes;
    job->iov[i].iov_len = length;
  }
  napi_value name;
  if (napi_create_string_utf8(env, "weft.writevSpans", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_reference(env, kept, 1, &job->pieces_ref) != napi_ok || napi_create_reference(env, argv[4], 1, &job->done_ref) != napi_ok ||
      napi_create_async_work(env, NULL, name, write_spans, call_done, job, &job->work) != napi_ok)
    return fail(env, job, "writevSpans: cannot start the write");
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    return fail(env, job, "writevSpans: cannot queue the write");
  }
  return NULL;
}

static napi_value module_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"writevSpans", NULL, writev_spans, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
