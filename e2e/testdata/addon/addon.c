/* A minimal N-API addon that calls into libnbextra. */
#include <node_api.h>

const char *nbextra_greeting(void);

static napi_value Hello(napi_env env, napi_callback_info info) {
  napi_value s;
  napi_create_string_utf8(env, nbextra_greeting(), NAPI_AUTO_LENGTH, &s);
  return s;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "hello", NAPI_AUTO_LENGTH, Hello, NULL, &fn);
  napi_set_named_property(env, exports, "hello", fn);
  return exports;
}
