package crash

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/nodeboot/nodeboot/"

// notPID1 are files of PID 1's packages whose code runs in another
// process (a panic there ends that process, not the kernel) or never runs
// on the node.
var notPID1 = map[string]string{
	"internal/sandbox/helper_linux.go": "runs in each app's sandbox helper (/init sandbox-exec)",
	// Linked because PID 1 reads boot entries through internal/disk; the
	// writer runs only in `nodeboot build`, never on the node.
	"internal/disk/squashfs.go": "the image builder's squashfs writer",
}

// TestNoBareGoOnPID1Path keeps every goroutine PID 1 starts recoverable: a
// `go` statement in any package cmd/nodeboot-init links must be crash.Go
// (or start with `defer crash.Recover(...)`). It reads the packages the
// way the compiler would for linux, so a new package on the path is
// checked without being listed here.
func TestNoBareGoOnPID1Path(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	ctx := build.Default
	ctx.GOOS = "linux"
	ctx.CgoEnabled = false

	seen := map[string]bool{}
	var bare []string
	var visit func(rel string)
	visit = func(rel string) {
		if seen[rel] {
			return
		}
		seen[rel] = true
		pkg, err := ctx.ImportDir(filepath.Join(root, rel), 0)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		for _, imp := range pkg.Imports {
			if strings.HasPrefix(imp, module) {
				visit(strings.TrimPrefix(imp, module))
			}
		}
		if rel == "internal/crash" {
			return // Go itself, and the crash path's own watchdog
		}
		for _, f := range pkg.GoFiles {
			path := rel + "/" + f
			if _, ok := notPID1[path]; ok {
				continue
			}
			bare = append(bare, bareGo(t, filepath.Join(root, path), path)...)
		}
	}
	visit("cmd/nodeboot-init")
	if len(seen) < 5 {
		t.Fatalf("only %d packages found on PID 1's path: the walk is broken", len(seen))
	}
	sort.Strings(bare)
	for _, b := range bare {
		t.Errorf("%s: a bare go statement on PID 1's path: a panic there panics the kernel; use crash.Go(name, f) or defer crash.Recover(name) first", b)
	}
}

// bareGo returns the positions of go statements in file whose function
// does not begin with `defer crash.Recover(...)`.
func bareGo(t *testing.T, file, rel string) []string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		g, ok := n.(*ast.GoStmt)
		if !ok {
			return true
		}
		if lit, ok := g.Call.Fun.(*ast.FuncLit); ok && startsWithRecover(lit.Body) {
			return true
		}
		out = append(out, rel+":"+itoa(fset.Position(g.Pos()).Line))
		return true
	})
	return out
}

func startsWithRecover(body *ast.BlockStmt) bool {
	if len(body.List) == 0 {
		return false
	}
	d, ok := body.List[0].(*ast.DeferStmt)
	if !ok {
		return false
	}
	sel, ok := d.Call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Recover" {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "crash"
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
