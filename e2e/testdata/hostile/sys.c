/* Raw system calls that have no JavaScript API, for the sandbox test:
 * call(name) makes the call and returns "ok" or the errno's name. Every
 * call is harmless if it were allowed (bad arguments, or a no-op). */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/swap.h>
#include <linux/reboot.h>
#include <netinet/in.h>
#include <linux/if_ether.h>
#include <signal.h>
#include <sys/wait.h>

static const char *errname(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case EACCES: return "EACCES";
  case EROFS: return "EROFS";
  case ENOENT: return "ENOENT";
  case ENOSYS: return "ENOSYS";
  case EINVAL: return "EINVAL";
  case EBADF: return "EBADF";
  case ESRCH: return "ESRCH";
  case EFAULT: return "EFAULT";
  case EAGAIN: return "EAGAIN";
  default: return strerror(e);
  }
}

static long attempt(const char *name) {
  if (!strcmp(name, "mount")) return mount("none", "/tmp", "tmpfs", 0, NULL);
  if (!strcmp(name, "umount")) return umount2("/proc", MNT_DETACH);
  if (!strcmp(name, "finit_module")) return syscall(SYS_finit_module, -1, "", 0);
  if (!strcmp(name, "init_module")) return syscall(SYS_init_module, NULL, 0, "");
  if (!strcmp(name, "delete_module")) return syscall(SYS_delete_module, "nonexistent", 0);
  if (!strcmp(name, "packet_socket")) return socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (!strcmp(name, "raw_socket")) return socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (!strcmp(name, "ptrace_pid1")) return ptrace(PTRACE_ATTACH, 1, NULL, NULL);
  if (!strcmp(name, "ptrace_parent")) return ptrace(PTRACE_ATTACH, getppid(), NULL, NULL);
  /* CAD_OFF is what PID 1 set already: harmless even if it went through. */
  if (!strcmp(name, "reboot")) return reboot(LINUX_REBOOT_CMD_CAD_OFF);
  if (!strcmp(name, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0);
  if (!strcmp(name, "swapon")) return swapon("/nonexistent", 0);
  if (!strcmp(name, "unshare_user")) return unshare(CLONE_NEWUSER);
  if (!strcmp(name, "unshare_mount")) return unshare(CLONE_NEWNS);
  if (!strcmp(name, "setns")) return syscall(SYS_setns, -1, 0);
  if (!strcmp(name, "bpf")) return syscall(SYS_bpf, 0, NULL, 0);
  if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0, 0, 0, 0, 0);
  if (!strcmp(name, "chroot")) return chroot("/tmp");
  if (!strcmp(name, "sethostname")) return sethostname("evil", 4);
  if (!strcmp(name, "settimeofday")) return syscall(SYS_settimeofday, NULL, NULL);
  if (!strcmp(name, "open_by_handle_at")) return syscall(SYS_open_by_handle_at, -1, NULL, 0);
  if (!strcmp(name, "io_uring_setup")) return syscall(SYS_io_uring_setup, 1, NULL);
  if (!strcmp(name, "setuid0")) return setuid(0);
  /* The kernel reads socket's family and type as int: high bits that a
   * filter comparing 64 bits sees and the kernel drops. Node has no way to
   * make a raw system call without an addon (process.binding is gone). */
  if (!strcmp(name, "packet_socket_high")) return syscall(SYS_socket, (long)AF_PACKET | (1L << 32), SOCK_RAW, htons(ETH_P_ALL));
  if (!strcmp(name, "raw_socket_high")) return syscall(SYS_socket, (long)AF_INET | (1L << 32), (long)SOCK_RAW | (1L << 32), IPPROTO_ICMP);
  if (!strcmp(name, "sock_packet")) return socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL));
  if (!strcmp(name, "vsock")) return socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
  if (!strcmp(name, "alg_socket")) return socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0);
  /* Fileless exec: a memfd is on no noexec mount. */
  if (!strcmp(name, "memfd_create")) return syscall(SYS_memfd_create, "x", 1 /* MFD_CLOEXEC */);
  if (!strcmp(name, "execveat")) return syscall(SYS_execveat, -1, "", NULL, NULL, 0x1000 /* AT_EMPTY_PATH */);
  /* No ASLR for what it runs next; restored below if it went through. */
  if (!strcmp(name, "personality")) return syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */);
  errno = EINVAL;
  return -2;
}

static napi_value Call(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  char name[64] = {0};
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len);
  errno = 0;
  long r = attempt(name);
  const char *res = r == -2 ? "unknown attempt" : r < 0 ? errname(errno) : "ok";
  if (r >= 0 && (strstr(name, "socket") || !strcmp(name, "sock_packet") || !strcmp(name, "vsock") || !strcmp(name, "memfd_create"))) close((int)r);
  if (r >= 0 && !strcmp(name, "personality")) syscall(SYS_personality, r);
  napi_create_string_utf8(env, res, NAPI_AUTO_LENGTH, &out);
  return out;
}

/* forkbomb(max) forks children that only wait, until fork fails or max
 * are running, then kills and reaps them all. Returns "N errno". */
static napi_value ForkBomb(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  int32_t max = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_get_value_int32(env, argv[0], &max);
  static pid_t kids[100000];
  if (max > 100000) max = 100000;
  int n = 0, err = 0;
  while (n < max) {
    pid_t p = fork();
    if (p < 0) { err = errno; break; }
    if (p == 0) { for (;;) pause(); }
    kids[n++] = p;
  }
  for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
  for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
  char buf[64];
  snprintf(buf, sizeof buf, "%d %s", n, err ? errname(err) : "none");
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn, fb;
  napi_create_function(env, "call", NAPI_AUTO_LENGTH, Call, NULL, &fn);
  napi_set_named_property(env, exports, "call", fn);
  napi_create_function(env, "forkbomb", NAPI_AUTO_LENGTH, ForkBomb, NULL, &fb);
  napi_set_named_property(env, exports, "forkbomb", fb);
  return exports;
}
