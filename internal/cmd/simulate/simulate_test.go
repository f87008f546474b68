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
		{[]string{"--trace", "/dev/zero"}, cli.ExitBadArgument, "longer than 65536 bytes"},
		{[]string{"--trace", "/"}, cli.ExitBadArgument, "is a directory"},
		{[]string{"--gpu-mem", "80"}, cli.ExitBadArgument, "80GiB"},
		{[]string{"--mem-util", "NaN"}, cli.ExitBadArgument, "mem-util"},
		{[]string{"--max-batch", "100000000", "--requests", "50"}, cli.ExitBadArgument, "virtual address space"},
		{[]string{"--max-batch", "20000", "--page-size", "2m", "--layout", "per-layer", "--paged-block", "none"}, cli.ExitBadArgument, "at most 456"},
		{[]string{"--requests", "9999999999999"}, cli.ExitBadArgument, "at most 10000000"},
		{[]string{"--max-context", "-1"}, cli.ExitBadArgument, "max-context"},
		{[]string{"--requests", "-1"}, cli.ExitBadArgument, "requests"},
		{[]string{"--page-size", "64k", "--page-size", "2m"}, cli.ExitBadArgument, "more than once"},
		{[]string{"--paged-block", ""}, cli.ExitBadArgument, "paged-block"},
		{[]string{"--model", "yi-34b-200k", "--page-size", "64k", "--layout", "megacache", "--paged-block", "none"}, cli.ExitBadArgument, "can exist"},
		{[]string{"--model", "llama-3-70b"}, cli.ExitBadArgument, "no room"},
	}
	for _, tc := range cases {
		code, _, errOut := run(append([]string{"simulate"}, tc.args...)...)
		if code != tc.code || !strings.Contains(strings.ToLower(errOut), strings.ToLower(tc.msg)) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, tc.msg)
		}
	}
}

func writeTrace(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "t.csv")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSimulateTraceErrors(t *testing.T) {
	bad := writeTrace(t, "num_prefill_tokens,num_decode_tokens\n10,"+strings.Repeat("x", 5000)+"\n")
	code, out, errOut := run("simulate", "--trace", bad)
	if code != cli.ExitBadArgument || out != "" || len(errOut) > 300 || !strings.Contains(errOut, "t.csv:2") {
		t.Errorf("malformed CSV: exit %d, stderr %q", code, errOut)
	}
	good := writeTrace(t, "num_prefill_tokens,num_decode_tokens\n10,5\n")
	if code, _, errOut := run("simulate", "--trace", good, "--seed", "4"); code != cli.ExitBadArgument || !strings.Contains(errOut, "--seed") {
		t.Errorf("--seed with --trace: exit %d, %q", code, errOut)
	}
	unreadable := writeTrace(t, "num_prefill_tokens,num_decode_tokens\n10,5\n")
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if code, _, errOut := run("simulate", "--trace", unreadable); code != cli.ExitNoPermission {
			t.Errorf("unreadable trace: exit %d, %q", code, errOut)
		}
	}
}

func TestSimulateSkipped(t *testing.T) {
	// One request fits, one is longer than the context, one has no decode.
	some := writeTrace(t, "num_prefill_tokens,num_decode_tokens\n100,20\n9000,10\n50,0\n")
	code, out, errOut := run("simulate", "--trace", some, "--page-size", "2m", "--layout", "per-layer", "--paged-block", "16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"1 of 3 requests are longer than --max-context 8192 (Llama-3-8B's context length)", "raise --max-context", "no decode tokens"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %s", want, errOut)
		}
	}
	if !strings.Contains(out, "SKIPPED") || !strings.Contains(out, "fits the most requests in 57.0 GiB:") {
		t.Errorf("table:\n%s", out)
	}
	all := writeTrace(t, "num_prefill_tokens,num_decode_tokens\n9000,10\n9500,10\n")
	code, out, errOut = run("simulate", "--trace", all, "--page-size", "2m", "--layout", "per-layer", "--paged-block", "none", "-o", "json")
	var rep struct {
		TooLong int `json:"skipped_too_long"`
		Results []struct {
			Skipped int `json:"skipped"`
		} `json:"results"`
	}
	if code != cli.ExitFailure || json.Unmarshal([]byte(out), &rep) != nil || rep.TooLong != 2 || rep.Results[0].Skipped != 2 ||
		!strings.Contains(errOut, "no request ran") || !strings.Contains(errOut, "warning: 2 of 2") {
		t.Errorf("all skipped: exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	// The same with a context that fits: everything runs.
	if code, _, errOut := run("simulate", "--trace", all, "--max-context", "10000", "--page-size", "2m", "--paged-block", "none"); code != 0 || errOut != "" {
		t.Errorf("--max-context 10000: exit %d, %s", code, errOut)
	}
}
