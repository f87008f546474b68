package mapcmd

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/backend/uvm/stockfake"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cli"
)

// A page size below 2 MiB picks the uvm backend by itself; on the stock
// driver its pages come in runs, one driver call per run.
func TestMapSmallPagesStock(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) { mapSmallPages(t, batched) })
	}
}

func mapSmallPages(t *testing.T, batched bool) {
	f := withFake(t)
	fd := stockfake.New()
	stockDriver = fd
	path := "stock path"
	if batched {
		stockDriver, path = stockfake.Batched{Driver: fd}, "batched path"
	}
	defer func() { stockDriver = nil }()
	code, out, errOut := run(t, "--page-size", "64k", "--pages", "96", "--batch", "32", "-o", "json")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Backend != "uvm" || !strings.Contains(rep.Driver, path) || rep.Leftover != "nothing" {
		t.Errorf("report %+v", rep)
	}
	// Three batches of 32 consecutive pages from one chunk: one call each.
	if rep.DriverCalls == nil || rep.DriverCalls.Map != 3 || rep.DriverCalls.Unmap != 3 {
		t.Errorf("driver calls %+v", rep.DriverCalls)
	}
	if live := fd.Live(); live != (stockfake.Live{}) {
		t.Errorf("driver left %s", live)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("CUDA left %s", live)
	}
}

// Without a UVM file in the process (the fake CUDA opens none), small
// pages are not supported here: exit 3, and nothing is left. The process's
// open files are hidden: on a GPU machine an earlier device test of this binary
// has real CUDA's UVM file open.
func TestMapSmallPagesUnavailable(t *testing.T) {
	f := withFake(t)
	defer uvm.SetProcFDDir(t.TempDir())()
	code, _, errOut := run(t, "--page-size", "64k")
	if code != cli.ExitNotSupported || !strings.Contains(errOut, "uvm") {
		t.Fatalf("code %d: %s", code, errOut)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("left %s", live)
	}
}
