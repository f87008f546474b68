package simulate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vattn/vattn/pagesize"
	"github.com/vattn/vattn/workload"
)

func model(t testing.TB, name string, tp int) workload.Model {
	t.Helper()
	m, err := workload.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if m, err = m.ShardTP(tp); err != nil {
		t.Fatal(err)
	}
	return m
}

func synthetic(t testing.TB, n int) workload.Trace {
	t.Helper()
	tr, err := workload.Synthetic(workload.SyntheticConfig{Requests: n, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestRunSmall(t *testing.T) {
	var calls int
	rep, err := Run(context.Background(), Config{
		Model: model(t, "llama-3-8b", 1), Trace: synthetic(t, 300), GPUMemory: 24 << 30, MaxBatch: 64,
		Progress: func(string, int, int) { calls++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 10 || calls == 0 {
		t.Fatalf("%d results, %d progress calls", len(rep.Results), calls)
	}
	for _, r := range rep.Results {
		if r.Completed+r.Skipped != 300 {
			t.Errorf("%s: %d completed + %d skipped of 300", r.Name, r.Completed, r.Skipped)
		}
		if r.PeakMappedBytes > rep.KVBudget || r.PeakLiveBytes > r.PeakMappedBytes+rep.TokenBytes*64 {
			t.Errorf("%s: peak mapped %d, live %d, budget %d", r.Name, r.PeakMappedBytes, r.PeakLiveBytes, rep.KVBudget)
		}
		if r.WasteFraction < 0 || r.WasteFraction >= 1 || r.MaxBatchReached == 0 || r.MaxBatchReached > 64 {
			t.Errorf("%s: waste %g, max batch %d", r.Name, r.WasteFraction, r.MaxBatchReached)
		}
		if r.Layout != Paged && (r.MapCalls == 0 || r.CriticalSecondsAsync <= 0 || r.CriticalSecondsSync <= r.CriticalSecondsAsync) {
			t.Errorf("%s: %d map calls, critical sync %g async %g", r.Name, r.MapCalls, r.CriticalSecondsSync, r.CriticalSecondsAsync)
		}
		if r.LatencyAssumed {
			t.Errorf("%s: latency assumed", r.Name)
		}
	}
	// Memory pressure: 24 GiB × 0.9 less 15 GiB of weights leaves ~6 GiB
	// of KV, ~49k tokens at 128 KiB a token, for 64 slots of ~3k tokens:
	// some configuration must preempt.
	var preempted int
	for _, r := range rep.Results {
		preempted += r.Preemptions
	}
	if preempted == 0 {
		t.Error("no preemption under memory pressure")
	}
}

func TestRunErrors(t *testing.T) {
	good := Config{Model: model(t, "llama-3-8b", 1), Trace: synthetic(t, 10)}
	cases := map[string]func(*Config){
		"empty trace":    func(c *Config) { c.Trace.Requests = nil },
		"no room for kv": func(c *Config) { c.Model = model(t, "llama-3-70b", 1) },
		"bad layout":     func(c *Config) { c.Layouts = []Layout{"diagonal"} },
		"bad block":      func(c *Config) { c.PagedBlock = []int{0} },
		"bad mem util":   func(c *Config) { c.MemUtil = 1.5 },
		"bad batch":      func(c *Config) { c.MaxBatch = -1 },
	}
	for name, mutate := range cases {
		cfg := good
		mutate(&cfg)
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, good); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

func TestSkipsRequestsLongerThanContext(t *testing.T) {
	tr := workload.Trace{Name: "t", Requests: []workload.Request{{Prefill: 100, Decode: 10}, {Prefill: 9000, Decode: 10}}}
	rep, err := Run(context.Background(), Config{Model: model(t, "llama-3-8b", 1), Trace: tr, PagedBlock: []int{}, Layouts: []Layout{PerLayer}, PageSizes: []pagesize.Size{pagesize.Size64K}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; r.Completed != 1 || r.Skipped != 1 {
		t.Fatalf("%+v", r)
	}
}

// tracesDir is where the shared request traces live: $VATTN_TRACES, or
// ../shared/data/traces beside the repository.
func tracesDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("VATTN_TRACES")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "data", "traces")
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("traces folder %s missing: %v", dir, err)
		}
		t.Skipf("traces folder %s missing (set VATTN_TRACES): %v", dir, err)
	}
	return dir
}

func arxivConfig(t testing.TB) Config {
	tr, err := workload.LoadCSV(filepath.Join(tracesDir(t), "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"))
	if err != nil {
		t.Fatal(err)
	}
	return Config{Model: model(t, "llama-3-8b", 1), Trace: tr, Layouts: []Layout{PerLayer}, PagedBlock: []int{}}
}

// TestArxivSmallPagesWasteLess is the point of small pages, on the real
// 28k-request arxiv trace: 64 KiB pages waste far less than 2 MiB ones.
func TestArxivSmallPagesWasteLess(t *testing.T) {
	if testing.Short() {
		t.Skip("full trace; runs without -short")
	}
	cfg := arxivConfig(t)
	cfg.PageSizes = []pagesize.Size{pagesize.Size64K, pagesize.Size2M}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	small, large := rep.Results[0], rep.Results[1]
	t.Logf("waste 64 KiB %.2f%%, 2 MiB %.2f%%; max batch %d vs %d; %.1fs",
		100*small.WasteFraction, 100*large.WasteFraction, small.MaxBatchReached, large.MaxBatchReached, rep.WallSeconds)
	if small.Completed != len(cfg.Trace.Requests) || large.Completed != len(cfg.Trace.Requests) {
		t.Fatalf("completed %d and %d of %d", small.Completed, large.Completed, len(cfg.Trace.Requests))
	}
	if small.WasteFraction*4 > large.WasteFraction {
		t.Fatalf("64 KiB waste %.4f is not far below 2 MiB waste %.4f", small.WasteFraction, large.WasteFraction)
	}
}

// BenchmarkSimulateArxiv simulates the whole arxiv trace for Llama-3-8B at
// the four page sizes (per-layer layout) and reports requests per second.
func BenchmarkSimulateArxiv(b *testing.B) {
	cfg := arxivConfig(b)
	for b.Loop() {
		if _, err := Run(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(cfg.Trace.Requests)*len(pagesize.All())*b.N)/b.Elapsed().Seconds(), "requests/s")
}

// TestRunIsRepeatable: the same config twice gives the same numbers (the
// background mapper's timing must not leak into the metrics).
func TestRunIsRepeatable(t *testing.T) {
	cfg := Config{Model: model(t, "llama-3-8b", 1), Trace: synthetic(t, 200), GPUMemory: 24 << 30, MaxBatch: 32,
		PageSizes: []pagesize.Size{pagesize.Size2M}, Layouts: []Layout{PerLayer}, PagedBlock: []int{}}
	var first Result
	for i := range 3 {
		rep, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := rep.Results[0]
		r.WallSeconds = 0
		if i == 0 {
			first = r
		} else if r != first {
			t.Fatalf("run %d differs:\n%+v\n%+v", i, r, first)
		}
	}
}

func TestUnavailableLayoutIsReported(t *testing.T) {
	m := model(t, "llama-3-8b", 1)
	m.HeadDim = 80 // 1280-byte tokens do not tile 64 KiB pages
	rep, err := Run(context.Background(), Config{Model: m, Trace: synthetic(t, 5), PageSizes: []pagesize.Size{pagesize.Size64K},
		Layouts: []Layout{PerLayer}, PagedBlock: []int{16}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || len(rep.Unavailable) != 1 {
		t.Fatalf("results %d, unavailable %v", len(rep.Results), rep.Unavailable)
	}
}
