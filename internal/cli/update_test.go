package cli

import (
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/contract"
)

func TestPrintOS(t *testing.T) {
	var b strings.Builder
	printOS(&b, &contract.OSStatus{
		Slots: []contract.SlotStatus{
			{Name: "a", State: "failed", Image: &contract.UpdateImage{ID: "bad1", Version: 9}},
			{Name: "b", State: "good", Booted: true, Image: &contract.UpdateImage{ID: "good1", Version: 7}},
		},
		Last: &contract.UpdateOutcome{Image: contract.UpdateImage{ID: "bad1"}, Reason: "app web did not become healthy"},
	})
	out := b.String()
	for _, want := range []string{"B (booted)  good", "good1", "A           failed", "last OS update: to bad1 failed: app web did not become healthy"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printOS(&b, &contract.OSStatus{NoSlots: true})
	if b.Len() != 0 {
		t.Errorf("an initramfs node printed %q", b.String())
	}
}
