package bench

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/backend/uvm/stockfake"
	"github.com/vattn/vattn/bench"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/internal/cmd/cmdtest"
)

func runCmd(t *testing.T, format cli.Format, args ...string) (int, string, string) {
	t.Helper()
	return cmdtest.Run(t, NewCmd(&format), args...)
}

func TestBenchSimJSON(t *testing.T) {
	code, out, errOut := runCmd(t, cli.JSON, "--backend", "sim", "--page-size", "64k,2m", "--step-batch", "1,32", "--iterations", "3", "--pages", "16")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if rep.Backend != "sim" || len(rep.Map) != 2*2*2 || len(rep.Steps) != 2*2*3 {
		t.Fatalf("rows: %d map, %d steps", len(rep.Map), len(rep.Steps))
	}
	for _, r := range rep.Map {
		if !r.Estimate || r.Source == "" || r.P50us <= 0 || r.GBps <= 0 || r.Calls != (16+r.Batch-1)/r.Batch {
			t.Errorf("map row %+v", r)
		}
	}
	for _, r := range rep.Steps {
		if !r.Estimate || r.Calls != 3 || r.MeanUs <= 0 {
			t.Errorf("step row %+v", r)
		}
		switch r.Case {
		case bench.CaseNoNewPage:
			if r.PagesPerCall != 0 || r.DriverUs != 0 {
				t.Errorf("no-new-page row mapped: %+v", r)
			}
		case bench.CaseNewPage:
			// Every slot maps one page index: 2 pages (K and V megacache ranges).
			if r.PagesPerCall != float64(2*r.Batch) || r.DriverUs <= 0 {
				t.Errorf("new-page row %+v", r)
			}
		}
	}
}

func TestBenchSimTable(t *testing.T) {
	code, out, errOut := runCmd(t, cli.Table, "--page-size", "256k", "--step-batch", "4", "--iterations", "2", "--pages", "8", "--map-batch", "8")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, want := range []string{"backend sim", "256k", "step-new-page", "stepasync-critical", "estimate", "estimates 256k: measured: stock nvidia-uvm"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// --grow-margin adds StepAsync rows that grow ahead of need: more memory
// held ahead than without, and none of it on the critical path.
func TestBenchSimGrowMargin(t *testing.T) {
	code, out, errOut := runCmd(t, cli.JSON, "--page-size", "64k", "--step-batch", "1", "--iterations", "1", "--pages", "1",
		"--growth", "--growth-steps", "48", "--compute", "0s", "--map-ahead", "1", "--grow-margin", "0,64",
		"--grow-limit-pages", "4096")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	rows := map[string]bench.GrowthRow{}
	for _, r := range rep.Growth {
		rows[fmt.Sprintf("%s %s %d", r.Layout, r.Mode, r.GrowMargin)] = r
	}
	if len(rep.Growth) != 2*3 || len(rows) != 2*3 {
		t.Fatalf("growth rows %v", rows)
	}
	for _, layout := range []string{"per-layer", "megacache"} {
		none, ahead := rows[layout+" async 0"], rows[layout+" async 64"]
		if ahead.AheadBytes <= none.AheadBytes || ahead.CriticalMapUs != 0 || ahead.BackgroundJobMaxPages == 0 {
			t.Errorf("%s: without a margin %+v\nwith 64 tokens %+v", layout, none, ahead)
		}
		if ahead.GrowLimitPages != 4096 || none.GrowLimitPages != 0 {
			t.Errorf("%s: grow limit pages %d with a margin, %d without", layout, ahead.GrowLimitPages, none.GrowLimitPages)
		}
	}
}

func TestBenchBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"--backend", "tpu"},
		{"--page-size", "4k"},
		{"--pages", "0"},
		{"--step-batch", "-1"},
		{"--backend", "sim,tpu"},
		{"--backend", "uvm", "--uvm-mode", "fast"},
		{"--growth", "--map-ahead", "-1"},
		{"--growth", "--growth-steps", "0"},
		{"--growth", "--grow-margin", "-1"},
		{"--growth", "--grow-limit", "-1"},
		{"--growth", "--grow-limit-pages", "-1"},
		{"--pages", "100000000", "--page-size", "64k"},
		{"--pages", "2000000"},
		{"--pages", "9000000000000000000"},
	} {
		if code, out, errOut := runCmd(t, cli.Table, args...); code != cli.ExitBadArgument || out != "" {
			t.Errorf("%v: code %d: %s, stdout %q", args, code, errOut, out)
		}
	}
	if _, _, errOut := runCmd(t, cli.Table, "--pages", "2000000"); !strings.Contains(errOut, "the simulated GPU has 80.0 GiB (at most 1310720 pages)") {
		t.Errorf("--pages beyond the simulated GPU: %s", errOut)
	}
}

// The fake GPU has 80 GB: 50000 2 MiB pages do not fit, and nothing is
// left allocated by the check.
func TestBenchPagesBeyondDevice(t *testing.T) {
	f := cmdtest.FakeCUDA(t, &cudaLib)
	code, out, errOut := runCmd(t, cli.Table, "--backend", "cudavmm", "--pages", "50000")
	if code != cli.ExitBadArgument || out != "" || !strings.Contains(errOut, "the device has") {
		t.Fatalf("code %d, stdout %q, stderr %s", code, out, errOut)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("bench left %s", live)
	}
}

func TestBenchCUDAVMMOnFake(t *testing.T) {
	f := cmdtest.FakeCUDA(t, &cudaLib)
	code, out, errOut := runCmd(t, cli.JSON, "--backend", "cudavmm", "--step-batch", "2", "--iterations", "2", "--pages", "4", "--map-batch", "1,4")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Map) != 4 || len(rep.Steps) != 3 || !strings.Contains(rep.Device, "Fake H100") {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Map {
		if r.Estimate || r.Backend != "cudavmm" {
			t.Errorf("cudavmm row %+v", r)
		}
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("bench left %s", live)
	}
}

func TestBenchUVMWithoutModule(t *testing.T) {
	cmdtest.FakeCUDA(t, &cudaLib)
	// The fake CUDA process has no /dev/nvidia-uvm file, so every page size is
	// skipped and nothing runs: not supported.
	code, out, errOut := runCmd(t, cli.Table, "--backend", "uvm", "--page-size", "64k")
	if code != cli.ExitNotSupported || !strings.Contains(errOut, "nothing could run") || !strings.Contains(out, "skipped: uvm 64KiB") {
		t.Fatalf("code %d: %s\n%s", code, errOut, out)
	}
}

// The stock small-page path and CUDA VMM measured in one run; growth rows
// on the stock path show map ahead cutting the driver calls per step.
func TestBenchStockAndCUDAVMM(t *testing.T) {
	f := cmdtest.FakeCUDA(t, &cudaLib)
	var fakes []*stockfake.Driver
	newStockDriver = func() uvm.StockDriver { fd := stockfake.New(); fakes = append(fakes, fd); return fd }
	defer func() { newStockDriver = nil }()
	var rep bench.Report
	code, out, errOut := runCmd(t, cli.JSON, "--backend", "cudavmm,uvm", "--page-size", "2m,64k", "--step-batch", "2", "--iterations", "2",
		"--pages", "4", "--map-batch", "4")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	backends := map[string]int{}
	for _, r := range rep.Map {
		backends[r.Backend+" "+r.PageSize.Short()]++
	}
	if backends["cudavmm 2m"] != 2 || backends["uvm 64k"] != 2 || backends["uvm 2m"] != 2 || len(rep.Skipped) != 1 {
		t.Errorf("map rows %v, skipped %v", backends, rep.Skipped)
	}

	code, out, errOut = runCmd(t, cli.JSON, "--backend", "uvm", "--page-size", "64k", "--step-batch", "1", "--iterations", "1",
		"--pages", "1", "--growth", "--growth-steps", "64", "--compute", "0s", "--map-ahead", "0,3")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	rep = bench.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	calls := map[string]float64{}
	for _, r := range rep.Growth {
		if r.Estimate || r.Steps != 64 {
			t.Errorf("growth row %+v", r)
		}
		calls[fmt.Sprintf("%s %s %d %s", r.PageSize, r.Layout, r.MapAhead, r.Mode)] = r.DriverCallsPerStep
	}
	if len(rep.Growth) != 2*2*2 {
		t.Errorf("%d growth rows", len(rep.Growth))
	}
	for _, layout := range []string{"per-layer", "megacache"} {
		if a, b := calls["64k "+layout+" 0 sync"], calls["64k "+layout+" 3 sync"]; a == 0 || b >= a/2 {
			t.Errorf("64k %s driver calls per step: %g without map-ahead, %g with 3", layout, a, b)
		}
	}
	for _, fd := range fakes {
		if live := fd.Live(); live != (stockfake.Live{}) {
			t.Errorf("driver left %s", live)
		}
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("bench left %s", live)
	}
}
