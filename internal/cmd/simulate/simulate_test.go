package simulate_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/internal/cmd/root"
)

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := root.Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSimulateTable(t *testing.T) {
	code, out, errOut := run("simulate", "--requests", "60", "--page-size", "64k,2m", "--max-batch", "16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"Llama-3-8B", "vattn 64k per-layer", "vattn 2m megacache", "paged block 16", "WASTE", "H200"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSimulateJSON(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "t.csv")
	body := "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n100,20,120,5\n3000,300,3300,10\n50,5,55,10\n"
	if err := os.WriteFile(csv, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("simulate", "--trace", csv, "--model", "mistral-7b", "--page-size", "256k",
		"--layout", "megacache", "--paged-block", "none", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Model    string `json:"model"`
		Requests int    `json:"requests"`
		Results  []struct {
			PageSize        string  `json:"page_size"`
			Layout          string  `json:"layout"`
			PeakMappedBytes uint64  `json:"peak_mapped_bytes"`
			PeakLiveBytes   uint64  `json:"peak_live_bytes"`
			WasteFraction   float64 `json:"waste_fraction"`
			MaxBatchReached int     `json:"max_batch_reached"`
			MapCalls        uint64  `json:"map_calls"`
			CriticalAsync   float64 `json:"critical_path_map_seconds_async"`
			Completed       int     `json:"completed"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Model != "Mistral-7B" || rep.Requests != 3 || len(rep.Results) != 1 {
		t.Fatalf("%+v", rep)
	}
	r := rep.Results[0]
	if r.PageSize != "256KiB" || r.Layout != "megacache" || r.Completed != 3 || r.MapCalls == 0 ||
		r.PeakLiveBytes == 0 || r.PeakMappedBytes < r.PeakLiveBytes || r.MaxBatchReached == 0 || r.CriticalAsync <= 0 {
		t.Fatalf("%+v", r)
	}
}

func TestSimulateBadInput(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--model", "gpt-9"}, cli.ExitBadArgument, "llama-3-8b"},
		{[]string{"--tp", "3"}, cli.ExitBadArgument, "tensor"},
		{[]string{"--page-size", "4k"}, cli.ExitBadArgument, "64k, 128k, 256k, 2m"},
		{[]string{"--layout", "diagonal"}, cli.ExitBadArgument, "per-layer"},
		{[]string{"--paged-block", "0"}, cli.ExitBadArgument, "paged-block"},
		{[]string{"--gpu-mem", "lots"}, cli.ExitBadArgument, "gpu-mem"},
		{[]string{"--mem-util", "2"}, cli.ExitBadArgument, "mem-util"},
		{[]string{"--max-batch", "0"}, cli.ExitBadArgument, "max-batch"},
		{[]string{"--requests", "0"}, cli.ExitBadArgument, "requests"},
		{[]string{"--trace", "/nonexistent/trace.csv"}, cli.ExitNotFound, "trace.csv"},
		{[]string{"--model", "llama-3-70b"}, cli.ExitBadArgument, "no room"},
	}
	for _, tc := range cases {
		code, _, errOut := run(append([]string{"simulate"}, tc.args...)...)
		if code != tc.code || !strings.Contains(strings.ToLower(errOut), strings.ToLower(tc.msg)) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, tc.msg)
		}
	}
}
