package backend

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestManualFence(t *testing.T) {
	f := NewManualFence(false)
	if f.Completed() != 0 {
		t.Fatal("a new fence has completed work")
	}
	e1, _ := f.Record()
	e2, _ := f.Record()
	if e1 != 1 || e2 != 2 {
		t.Fatalf("epochs %d %d", e1, e2)
	}
	if err := f.Complete(3); err == nil {
		t.Fatal("completing an unrecorded epoch succeeded")
	}
	if err := f.Wait(context.Background(), 3); err == nil {
		t.Fatal("waiting for an unrecorded epoch succeeded")
	}
	done := make(chan error)
	go func() { done <- f.Wait(context.Background(), e2) }()
	select {
	case <-done:
		t.Fatal("wait returned before completion")
	case <-time.After(10 * time.Millisecond):
	}
	if err := f.Complete(e2); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = f.Complete(e1) // older: no-op
	if f.Completed() != e2 {
		t.Fatalf("completed went back to %d", f.Completed())
	}
	e3, _ := f.Record()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(5 * time.Millisecond); cancel() }()
	if err := f.Wait(ctx, e3); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait after cancel: %v", err)
	}
	f.CompleteAll()
	if f.Completed() != e3 || f.Recorded() != e3 {
		t.Fatal("CompleteAll did not complete everything")
	}
}

func TestAutoFence(t *testing.T) {
	f := NewManualFence(true)
	e, _ := f.Record()
	if f.Completed() != e {
		t.Fatal("auto fence left work pending")
	}
}

func TestRegionContains(t *testing.T) {
	r := Region{Addr: 1 << 20, Size: 4 << 20}
	cases := []struct {
		addr, n uint64
		in      bool
	}{
		{1 << 20, 4 << 20, true}, {1 << 20, 4<<20 + 1, false}, {5 << 20, 0, true}, {5 << 20, 1, false},
		{0, 1, false}, {1<<20 + 1, 1 << 20, true}, {^uint64(0), 2, false}, {1 << 20, ^uint64(0), false},
	}
	for _, c := range cases {
		if r.Contains(c.addr, c.n) != c.in {
			t.Errorf("Contains(%#x, %#x) = %v", c.addr, c.n, !c.in)
		}
	}
}
