package disk

import (
	"fmt"
	"os"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// ReadLayout reads the partitions of a disk image Write made (or a disk
// written from one), found by their GPT names. Only the fields the GPT
// holds are set: the partitions, the disk's size and GUID.
func ReadLayout(imgPath string) (l *Layout, err error) {
	// go-diskfs panics on some damaged tables (see ReadBoot).
	defer func() {
		if r := recover(); r != nil {
			l, err = nil, fmt.Errorf("%s: the partition table is damaged (%v)", imgPath, r)
		}
	}()
	st, err := os.Stat(imgPath)
	if err != nil {
		return nil, err
	}
	d, err := diskfs.Open(imgPath, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", imgPath, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("%s has no partition table nodeboot can read: %w", imgPath, err)
	}
	t, ok := pt.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("%s: the partition table is not GPT", imgPath)
	}
	l = &Layout{Size: st.Size(), DiskGUID: strings.ToLower(t.GUID)}
	found := map[string]*Partition{LabelESP: &l.ESP, LabelRootA: &l.RootA, LabelRootB: &l.RootB, LabelData: &l.Data}
	for i, p := range t.Partitions {
		dst := found[p.Name]
		if dst == nil {
			continue
		}
		*dst = Partition{Number: i + 1, Label: p.Name, Type: strings.ToUpper(string(p.Type)),
			GUID: strings.ToLower(p.GUID), Offset: p.GetStart(), Size: p.GetSize()}
		delete(found, p.Name)
	}
	if len(found) > 0 {
		var missing []string
		for name := range found {
			missing = append(missing, name)
		}
		return nil, fmt.Errorf("%s is not a nodeboot disk image: it has no partition named %s", imgPath, strings.Join(missing, ", "))
	}
	return l, nil
}
