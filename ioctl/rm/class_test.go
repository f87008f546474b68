package rm

import (
	"reflect"
	"testing"
)

// TestLayouts: 535's block is the newest cut before numaNode, field for
// field, and each branch is passed its own size. TestStockABI (ioctl/branch)
// checks both against NVIDIA's headers.
func TestLayouts(t *testing.T) {
	newest := reflect.TypeFor[NV_MEMORY_ALLOCATION_PARAMS]()
	old := Layout535.MemoryAllocationParams
	numa, _ := newest.FieldByName("NumaNode")
	if old.NumField() != numa.Index[0] {
		t.Fatalf("535 block has %d fields, want the %d before numaNode", old.NumField(), numa.Index[0])
	}
	for i := range old.NumField() {
		f, g := old.Field(i), newest.Field(i)
		if f.Name != g.Name || f.Offset != g.Offset || f.Type != g.Type {
			t.Errorf("field %d: %s at %d (%s), newest has %s at %d (%s)", i, f.Name, f.Offset, f.Type, g.Name, g.Offset, g.Type)
		}
	}
	if n := Layout535.memoryParamsSize(); n != 120 {
		t.Errorf("535 paramsSize %d, want 120", n)
	}
	if n := Layout550.memoryParamsSize(); n != 128 {
		t.Errorf("550 paramsSize %d, want 128", n)
	}
}

func TestPrefixBeforeUnknownField(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a field the struct lacks")
		}
	}()
	prefixBefore[NV_MEMORY_ALLOCATION_PARAMS]("NoSuchField")
}
