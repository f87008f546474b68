package root

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vattn/vattn/internal/cli"
)

// TestExitCodes is the CLI's contract: for each command line, the exit code
// and the first line it prints on stderr (or, with exit 0, on stdout). It
// covers every command and every bad input the issue reports; all of it
// runs the same on any machine (no GPU, driver or root needed).
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := write("long.csv", "num_prefill_tokens,num_decode_tokens\n9000,10\n9100,20\n")
	malformed := write("bad.csv", "num_prefill_tokens,num_decode_tokens\n10,ten\n")
	hugeField := write("huge.csv", "num_prefill_tokens,num_decode_tokens\n10,"+strings.Repeat("9", 100<<10)+"\n")
	small := write("small.csv", "num_prefill_tokens,num_decode_tokens\n100,10\n")

	cases := []struct {
		args  string
		code  int
		first string // a regexp the first line must match
	}{
		// the root, help and unknown words
		{"", 0, `^vattnctl manages`},
		{"nope", 2, `^vattnctl: unknown command "nope" for "vattnctl"`},
		{"help nope", 2, `^vattnctl: unknown command "nope"`},
		{"help simulate", 0, `^simulate drives`},
		{"--nope", 2, `^vattnctl: unknown flag: --nope`},
		{"-o yaml version", 2, `unknown output format "yaml"`},
		{"-o json -o table version", 2, `more than once`},
		// version
		{"version", 0, `^vattnctl \S+ `},
		{"version -o json", 0, `^\{$`},
		{"version extra", 2, `unknown command "extra" for "vattnctl version"`},
		// simulate
		{"simulate --requests 30 --page-size 2m --layout per-layer --paged-block 16 --max-batch 8", 0, `^model Llama-3-8B`},
		{"simulate extra", 2, `unknown command "extra" for "vattnctl simulate"`},
		{"simulate --trace " + long, 1, `^warning: 2 of 2 requests are longer than --max-context 8192`},
		{"simulate --trace " + long + " -o json", 1, `^warning: 2 of 2`},
		{"simulate --trace " + malformed, 2, `bad.csv:2: num_decode_tokens "ten": not an integer`},
		{"simulate --trace " + hugeField, 2, `huge.csv:2: too large: a line longer than 65536 bytes`},
		{"simulate --trace /dev/zero", 2, `/dev/zero:1: too large`},
		{"simulate --trace " + filepath.Join(dir, "missing.csv"), 6, `missing.csv: no such file`},
		{"simulate --trace " + small + " --seed 2", 2, `--seed shapes the synthetic trace`},
		{"simulate --model yi-34b-200k --page-size 64k --layout megacache --paged-block none", 2, `no configuration asked for can exist`},
		{"simulate --max-batch 100000000 --requests 50 --page-size 64k", 2, `--max-batch 100000000: .*virtual address space.*at most 131072`},
		{"simulate --requests 9999999999999", 2, `--requests 9999999999999: at most 10000000`},
		{"simulate --mem-util NaN", 2, `--mem-util NaN`},
		{"simulate --gpu-mem 80", 2, `--gpu-mem: size "80" has no unit: write 80GiB`},
		{"simulate --page-size 64k --page-size 2m", 2, `--page-size.*more than once`},
		{"simulate --model gpt-9", 2, `--model: `},
		// map, on the simulator
		{"map --backend sim --pages 8 --batch 4", 0, `^backend sim`},
		{"map --backend sim --pages 1000000000", 2, `--pages 1000000000 of 2MiB: more than any GPU's memory`},
		{"map --backend sim --pages 100000", 2, `the device has 80.0 GiB \(at most 40960 pages\)`},
		{"map --backend sim --batch 0", 2, `--batch 0`},
		{"map --backend sim --batch -3", 2, `--batch -3`},
		{"map --access foo", 2, `--access`},
		{"map --backend sim -i 3", 6, `no such GPU`},
		{"map --backend tpu", 2, `--backend "tpu"`},
		// bench, on the simulator
		{"bench --pages 100000000 --page-size 64k", 2, `6.0 TiB; the simulated GPU has 80.0 GiB`},
		{"bench --backend tpu", 2, `--backend "tpu"`},
		{"bench extra", 2, `unknown command "extra"`},
		// commands that need the machine: only their argument checks here
		{"selftest extra", 2, `unknown command "extra"`},
		{"trace --unit s", 2, `--unit`},
		{"status extra", 2, `unknown command "extra"`},
		{"install-driver --no-load --reload", 2, `--no-load and --reload exclude each other`},
		{"install-driver --dry-run --source " + filepath.Join(dir, "no-such-source"), 6, `--source: .*no-such-source: no such file`},
		{"uninstall-driver extra", 2, `unknown command "extra"`},
		{"completion bash", 0, `^# bash completion`},
	}
	for _, tc := range cases {
		args := strings.Fields(tc.args)
		code, out, errOut := run(args...)
		text := errOut
		if tc.code == 0 {
			text = out
		}
		first, _, _ := strings.Cut(text, "\n")
		if code != tc.code || !regexp.MustCompile(tc.first).MatchString(first) {
			t.Errorf("vattnctl %s: exit %d, first line %.200q; want %d and /%s/", tc.args, code, first, tc.code, tc.first)
		}
		if tc.code != 0 && len(errOut) > 2000 {
			t.Errorf("vattnctl %s: %d bytes on stderr", tc.args, len(errOut))
		}
	}
}

// TestREADMEExitCodes: README's exit-code table is cli.ExitCodes.
func TestREADMEExitCodes(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `?(\\d+)`? \\| (.+?) \\|$")
	got := map[int]string{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		n, _ := strconv.Atoi(m[1])
		got[n] = m[2]
	}
	if len(got) != len(cli.ExitCodes) {
		t.Errorf("README lists %d exit codes, cli.ExitCodes %d", len(got), len(cli.ExitCodes))
	}
	for _, c := range cli.ExitCodes {
		if got[c.Code] != c.Meaning {
			t.Errorf("exit %d: README says %q, the code %q", c.Code, got[c.Code], c.Meaning)
		}
	}
}
