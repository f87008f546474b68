package simulate

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vattn/vattn/pagesize"
	"github.com/vattn/vattn/workload"
)

func TestCheckLimits(t *testing.T) {
	base := func() Config { return Config{Model: model(t, "llama-3-8b", 1)} }
	if cfg := base(); cfg.Check() != nil {
		t.Fatalf("defaults: %v", cfg.Check())
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		max    int // 0: not a LimitError
		msg    string
	}{
		// 8192 tokens × 2 KiB per range × 64 ranges = 1 GiB a slot: 2^47 holds 131072.
		{"address space", func(c *Config) { c.MaxBatch = 100_000_000 }, 131072, "virtual address space"},
		// 57 GiB over one 2 MiB page in each of 64 ranges: 456 requests.
		{"memory", func(c *Config) {
			c.MaxBatch, c.PageSizes, c.Layouts, c.PagedBlock = 1000, []pagesize.Size{pagesize.Size2M}, []Layout{PerLayer}, []int{}
		}, 456, "holds at most 456 requests"},
		{"NaN mem util", func(c *Config) { c.MemUtil = math.NaN() }, 0, "memory utilization"},
		{"tiny gpu", func(c *Config) { c.GPUMemory = 1 << 20 }, 0, "no room for KV"},
	}
	for _, tc := range cases {
		cfg := base()
		tc.mutate(&cfg)
		err := cfg.Check()
		var le *LimitError
		if !errors.Is(err, ErrConfig) || !strings.Contains(fmt_(err), tc.msg) || (tc.max != 0) != errors.As(err, &le) ||
			(le != nil && le.Max != tc.max) {
			t.Errorf("%s: %v (%+v), want max %d and %q", tc.name, err, le, tc.max, tc.msg)
		}
	}
	// The memory bound takes the most permissive configuration: the
	// paged baseline's 2 MiB blocks let 29184 requests in.
	cfg := base()
	cfg.MaxBatch, cfg.PageSizes, cfg.Layouts, cfg.PagedBlock = 1000, []pagesize.Size{pagesize.Size2M}, []Layout{PerLayer}, []int{16}
	if err := cfg.Check(); err != nil {
		t.Errorf("1000 slots with the paged baseline in 57 GiB: %v", err)
	}
}

func fmt_(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestHugeBatchFewRequests: a batch far larger than the trace costs no more
// than one as large as the trace.
func TestHugeBatchFewRequests(t *testing.T) {
	rep, err := Run(context.Background(), Config{Model: model(t, "llama-3-8b", 1), Trace: synthetic(t, 20), MaxBatch: 20000,
		PageSizes: []pagesize.Size{pagesize.Size64K}, Layouts: []Layout{Megacache}, PagedBlock: []int{16}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.MaxBatch != 20000 || len(rep.Results) != 2 || rep.Results[0].Completed != 20 || rep.Results[1].MaxBatchReached > 20 {
		t.Fatalf("%+v", rep)
	}
}

func TestInterruptedKeepsFinished(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{Model: model(t, "llama-3-8b", 1), Trace: synthetic(t, 300), MaxBatch: 32,
		PageSizes: []pagesize.Size{pagesize.Size2M}, Layouts: []Layout{PerLayer}, PagedBlock: []int{16},
		Progress: func(name string, _, _ int) {
			if strings.HasPrefix(name, "paged") {
				cancel()
			}
		}}
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) || rep == nil || !rep.Interrupted || len(rep.Results) != 1 ||
		rep.Results[0].Name != "vattn 2m per-layer" || rep.Best != "vattn 2m per-layer" {
		t.Fatalf("err %v, report %+v", err, rep)
	}
}

func TestSkipCountsAndBest(t *testing.T) {
	tr := workload.Trace{Name: "t", Requests: []workload.Request{{Prefill: 100, Decode: 10}, {Prefill: 9000, Decode: 10},
		{Prefill: 50, Decode: 0}, {Prefill: 2000, Decode: 300}}}
	rep, err := Run(context.Background(), Config{Model: model(t, "llama-3-8b", 1), Trace: tr,
		PageSizes: []pagesize.Size{pagesize.Size64K, pagesize.Size2M}, Layouts: []Layout{Megacache}, PagedBlock: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.TooLong != 1 || rep.NoDecode != 1 {
		t.Fatalf("too long %d, no decode %d", rep.TooLong, rep.NoDecode)
	}
	for _, r := range rep.Results {
		if r.Skipped != 2 || r.Completed != 2 || r.MeanBatch <= 0 || r.MeanBatch > 2 {
			t.Errorf("%+v", r)
		}
	}
	if rep.Best == "" {
		t.Error("no best configuration")
	}
	results := []Result{{Name: "a", Completed: 1, MeanBatch: 3, Preemptions: 2}, {Name: "b", Completed: 1, MeanBatch: 3, Preemptions: 1},
		{Name: "c", Completed: 0, MeanBatch: 9}, {Name: "d", Completed: 1, MeanBatch: 2}}
	if got := best(results); got != "b" {
		t.Errorf("best = %q, want b (same batch, fewer preemptions)", got)
	}
	if best(results[2:3]) != "" {
		t.Error("a result that completed nothing is best")
	}
}

func TestPagesPerToken(t *testing.T) {
	m := model(t, "llama-3-8b", 1)
	m.Layers = 64 // 64 × 2 KiB = 128 KiB a token per range: two 64 KiB pages
	rep, err := Run(context.Background(), Config{Model: m, Trace: synthetic(t, 5), GPUMemory: 200 << 30,
		PageSizes: []pagesize.Size{pagesize.Size64K}, Layouts: []Layout{Megacache}, PagedBlock: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; r.PageTokens != 0 || r.PagesPerToken != 2 {
		t.Fatalf("%+v", r)
	}
}
