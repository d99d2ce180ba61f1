// Command floorinit is the benchmark's floor: the least an init can do
// before node serves on this kernel. It mounts devtmpfs (for /dev/console)
// and /proc, gives eth0 the static address QEMU's user network expects
// (10.0.2.15/24; the HTTP check comes in through QEMU's port forward), and
// execs node on the app at once: no supervisor, no /data, no DHCP.
//
// The harness compiles it with CGO_ENABLED=0 into a minimal initramfs with
// the same kernel, node and app as nodeboot's image.
package main
