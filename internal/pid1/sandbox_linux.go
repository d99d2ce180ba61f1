package pid1

import (
	"sync"

	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/sandbox"
	"github.com/nodeboot/nodeboot/internal/spec"
)

var landlockOnce sync.Once

// appSandbox returns the sandbox an app runs in (nil: turned off by its
// config) and says on the console what the kernel offers, once per boot:
// a kernel without Landlock still gets the namespaces, the capability
// drop and seccomp, but the operator should know the second wall is missing.
func appSandbox(log *boot.Logger, a spec.RuntimeApp) *sandbox.Spec {
	landlockOnce.Do(func() {
		if abi := sandbox.LandlockABI(); abi > 0 {
			log.Printf("sandbox: landlock ABI %d", abi)
		} else {
			log.Printf("WARNING: sandbox: the kernel has no Landlock (add lsm=landlock to the kernel command line); apps keep their namespaces, seccomp and no capabilities")
		}
	})
	sb := a.SandboxSpec()
	if sb == nil {
		log.Printf("app %s: sandbox off (\"sandbox\": {\"enabled\": false}): it runs with its own uid only", a.Name)
		return nil
	}
	log.Printf("app %s: sandboxed as uid %d, %s", a.Name, a.UID, sb.Limits)
	// Say at boot, not at the first OOM, which limits this kernel cannot
	// enforce; the supervisor prepares the cgroup again at each start.
	cg, err := sandbox.PrepareCgroup(sandbox.CgroupRoot, a.Name, sb.Limits)
	if err != nil {
		log.Printf("app %s: %v", a.Name, err)
		return sb
	}
	for _, m := range cg.Missing {
		switch m {
		case "memory.max":
			log.Printf("WARNING: app %s: this kernel has no memory cgroup (CONFIG_MEMCG): PID 1's watchdog enforces its memory limit instead, measuring every %s", a.Name, "100ms")
		case "memory.oom.group":
		default:
			log.Printf("WARNING: app %s: this kernel cannot enforce %s (boot a kernel with it, --kernel)", a.Name, m)
		}
	}
	return sb
}
