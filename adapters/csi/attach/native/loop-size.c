/*
 * Changes the size limit of a bound loop device (LOOP_SET_STATUS64), which the kernel allows while
 * the device is open and mounted: the way an attached volume grows online. losetup can set a size
 * limit only when it binds a device, so this is the one ioctl Weft issues itself.
 */
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PATH_MAX_BYTES 4096

static napi_value fail(napi_env env, const char *what, const char *path, int error) {
  char message[PATH_MAX_BYTES + 128];
  snprintf(message, sizeof(message), "%s %s: %s", what, path, strerror(error));
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* setLoopSizeLimit(device: string, bytes: number): the device then shows min(bytes, file size). */
static napi_value set_loop_size_limit(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[PATH_MAX_BYTES];
  size_t pathLength;
  int64_t bytes;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &pathLength) != napi_ok ||
      pathLength >= sizeof(path) - 1 || napi_get_value_int64(env, argv[1], &bytes) != napi_ok || bytes <= 0) {
    napi_throw_type_error(env, NULL, "setLoopSizeLimit(device: string, bytes: number > 0): bad arguments");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(env, "open", path, errno);
  struct loop_info64 status;
  memset(&status, 0, sizeof(status));
  /* Everything else (offset, flags, name) is written back as the kernel reports it. */
  if (ioctl(fd, LOOP_GET_STATUS64, &status) != 0) {
    int error = errno;
    close(fd);
    return fail(env, "LOOP_GET_STATUS64 on", path, error);
  }
  status.lo_sizelimit = (__u64)bytes;
  if (ioctl(fd, LOOP_SET_STATUS64, &status) != 0) {
    int error = errno;
    close(fd);
    return fail(env, "LOOP_SET_STATUS64 on", path, error);
  }
  close(fd);
  return NULL;
}

static napi_value module_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"setLoopSizeLimit", NULL, set_loop_size_limit, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
