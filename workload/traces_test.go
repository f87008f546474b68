package workload

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The public traces from the vAttention artifact and what
// shared/data/traces/README.md says about them.
var sharedTraces = []struct {
	file            string
	count           int
	prefill, decode [4]float64 // mean, p50, p90, max
}{
	{"arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", 28257,
		[4]float64{2588, 2730, 3702, 4054}, [4]float64{291, 167, 372, 4056}},
	{"arxiv_long_online.csv", 10111,
		[4]float64{29567, 27843, 38489, 45819}, [4]float64{363, 318, 571, 10845}},
	{"sync_vs_async_trace.csv", 3965,
		[4]float64{1800, 1800, 1959, 2000}, [4]float64{749, 744, 953, 1000}},
}

// tracesDir finds the shared traces: $VATTN_TRACES, else ../shared/data/traces;
// a relative path is taken from the repository root (the directory holding
// go.mod), as CI lays them out. Without them the test fails under CI=true and
// is skipped elsewhere.
func tracesDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("VATTN_TRACES")
	if dir == "" {
		dir = filepath.Join("..", "shared", "data", "traces")
	}
	if !filepath.IsAbs(dir) {
		root, err := repoRoot()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(root, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, sharedTraces[0].file)); err != nil {
		msg := "shared traces not found (set VATTN_TRACES to the folder holding " + sharedTraces[0].file + "): " + err.Error()
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func TestSharedTraces(t *testing.T) {
	dir := tracesDir(t)
	for _, want := range sharedTraces {
		t.Run(want.file, func(t *testing.T) {
			tr, err := LoadCSV(filepath.Join(dir, want.file))
			if err != nil {
				t.Fatal(err)
			}
			st := tr.Stats()
			if st.Count != want.count {
				t.Errorf("%d requests, README says %d", st.Count, want.count)
			}
			// The README rounds to whole tokens.
			check := func(what string, got Summary, w [4]float64) {
				for i, g := range []float64{got.Mean, float64(got.P50), float64(got.P90), float64(got.Max)} {
					if math.Abs(g-w[i]) > 1 {
						t.Errorf("%s %s = %.1f, README says %.0f", what, []string{"mean", "p50", "p90", "max"}[i], g, w[i])
					}
				}
			}
			check("prefill", st.Prefill, want.prefill)
			check("decode", st.Decode, want.decode)
			t.Logf("%s: %+v", tr.Name, st)
		})
	}
}

func BenchmarkLoadCSV(b *testing.B) {
	path := filepath.Join(tracesDir(b), sharedTraces[0].file)
	for b.Loop() {
		if _, err := LoadCSV(path); err != nil {
			b.Fatal(err)
		}
	}
}
