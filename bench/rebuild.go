package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
)

// rebuildWarm is how many edit → rebuild rounds each way is timed.
const rebuildWarm = 5

// RebuildRun is one way of rebuilding examples/hello after a one-line
// edit to server.js: its first build, and the warm rebuilds after it.
type RebuildRun struct {
	What  string
	First time.Duration
	Warm  []time.Duration
	Err   string
	// Load is the host's 1-minute load average before and after (the
	// figures are wall-clock times on a shared host).
	Load string
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// measureRebuilds times the inner loop `edit → nodeboot run`: the build
// run does before it starts QEMU (in process, with run's options), and for
// comparison `nodeboot build -o DIR` and run's disk format.
func measureRebuilds(ctx context.Context, e *env) []RebuildRun {
	ways := []struct {
		what  string
		build func(proj, out string) error
	}{
		{"`nodeboot run` (initramfs, the default)", func(proj, out string) error {
			_, err := build.Build(ctx, build.Options{AppDir: proj, OutDir: out, Scratch: true, Version: "bench"})
			return err
		}},
		{"`nodeboot build -o out` (initramfs, fsynced)", func(proj, out string) error {
			var log bytes.Buffer
			if err := cli.Run(ctx, []string{"build", proj, "-o", out}, &log, &log); err != nil {
				return fmt.Errorf("%w\n%s", err, log.String())
			}
			return nil
		}},
		{"`nodeboot run --format disk`", func(proj, out string) error {
			_, err := build.Build(ctx, build.Options{AppDir: proj, Format: build.FormatDisk, Output: filepath.Join(out, "disk.img"), Version: "bench"})
			return err
		}},
	}
	var runs []RebuildRun
	for i, w := range ways {
		r := RebuildRun{What: w.what}
		before := loadAvg()
		proj := filepath.Join(e.tmp, fmt.Sprintf("rebuild-%d", i))
		out := filepath.Join(e.tmp, fmt.Sprintf("rebuild-%d-out", i))
		err := copyTree(e.appDir, proj)
		for n := 0; err == nil && n <= rebuildWarm; n++ {
			if n > 0 {
				err = appendLine(filepath.Join(proj, "server.js"), fmt.Sprintf("// edit %d\n", n))
				if err != nil {
					break
				}
			}
			fmt.Fprintf(os.Stderr, "rebuild: %s, build %d of %d\n", w.what, n+1, rebuildWarm+1)
			t0 := time.Now()
			if err = w.build(proj, out); err != nil {
				break
			}
			if d := time.Since(t0); n == 0 {
				r.First = d
			} else {
				r.Warm = append(r.Warm, d)
			}
		}
		if err != nil {
			r.Err = err.Error()
		}
		r.Load = before + " → " + loadAvg()
		os.RemoveAll(out)
		runs = append(runs, r)
	}
	return runs
}

func appendLine(p, line string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

const rebuildHeading = "## Warm rebuild\n"

func renderRebuilds(p func(string, ...any), runs []RebuildRun) {
	p(rebuildHeading + "\n")
	p("examples/hello built once, then rebuilt %d times, each after one line added to server.js: the time\n", rebuildWarm)
	p("from the start of the build until the image is ready for QEMU (in process, so without the CLI's own\n")
	p("start). The initramfs is the cached system part (PID 1, node, its libraries; written once per content\n")
	p("into the user cache) followed by the app part, so a rebuild writes only the app's few KiB after an\n")
	p("in-kernel copy of the system part; `nodeboot run` skips the fsync of its own image dir, which it writes\n")
	p("again before every boot. The first build wrote the system part unless an earlier build had. Measured\n")
	p("%s, %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), cell(hostInfo().CPU))
	p("| rebuild | first build | warm: median | warm: min – max | host load average (%d cores) |\n", runtime.NumCPU())
	p("|---|---:|---:|---:|---:|\n")
	for _, r := range runs {
		if r.Err != "" {
			p("| %s | failed: %s | | | %s |\n", r.What, cell(firstLine(r.Err)), r.Load)
			continue
		}
		w := slices.Clone(r.Warm)
		slices.Sort(w)
		if len(w) == 0 {
			continue
		}
		p("| %s | %s | %s | %s – %s | %s |\n", r.What, ms(r.First), ms(w[len(w)/2]), ms(w[0]), ms(w[len(w)-1]), r.Load)
	}
	p("\n")
}

// runRebuildOnly measures the rebuilds and replaces their section of the
// report in o.out.
func runRebuildOnly(ctx context.Context, e *env, o options) error {
	if o.out == "" {
		return fmt.Errorf("-rebuild-only needs -o, the report whose rebuild section it replaces")
	}
	doc, err := os.ReadFile(o.out)
	if err != nil {
		return err
	}
	runs := measureRebuilds(ctx, e)
	var sec strings.Builder
	renderRebuilds(func(f string, a ...any) { fmt.Fprintf(&sec, f, a...) }, runs)
	if err := renameio.WriteFile(o.out, []byte(spliceSection(string(doc), rebuildHeading, sec.String())), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote the rebuild section of %s\n", o.out)
	for _, r := range runs {
		if r.Err != "" {
			return fmt.Errorf("rebuild %s failed: %s", r.What, r.Err)
		}
	}
	return nil
}
