package workload

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestCatalogFacts checks each entry against its public config.json, and
// recomputes the parameter count from the shapes that config gives
// (embeddings and LM head untied, SwiGLU MLP, two RMSNorms a layer plus a
// final one), so a mistyped digit in either shows up.
func TestCatalogFacts(t *testing.T) {
	tests := []struct {
		name                                         string
		layers, hidden, heads, kvHeads, inter, vocab int
		maxPos                                       int
	}{
		{"Llama-2-7B", 32, 4096, 32, 32, 11008, 32000, 4096},
		{"Llama-3-8B", 32, 4096, 32, 8, 14336, 128256, 8192},
		{"Llama-3-70B", 80, 8192, 64, 8, 28672, 128256, 8192},
		{"Mistral-7B", 32, 4096, 32, 8, 14336, 32000, 32768},
		{"Yi-6B-200K", 32, 4096, 32, 4, 11008, 64000, 200000},
		{"Yi-34B-200K", 60, 7168, 56, 8, 20480, 64000, 200000},
	}
	if len(tests) != len(Models()) {
		t.Errorf("catalog has %d models, test knows %d", len(Models()), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Lookup(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			headDim := tt.hidden / tt.heads
			want := Model{Name: tt.name, Layers: tt.layers, KVHeads: tt.kvHeads, HeadDim: headDim,
				QueryHeads: tt.heads, MaxContext: tt.maxPos, TP: 1, Params: m.Params}
			if m != want {
				t.Errorf("got %+v, want %+v", m, want)
			}
			h, kv := uint64(tt.hidden), uint64(tt.kvHeads*headDim)
			perLayer := 2*h*h + 2*h*kv + 3*h*uint64(tt.inter) + 2*h
			params := uint64(tt.layers)*perLayer + 2*uint64(tt.vocab)*h + h
			if m.Params != params {
				t.Errorf("Params = %d, the config adds up to %d", m.Params, params)
			}
		})
	}
}

func TestLookupSpellings(t *testing.T) {
	tests := map[string]string{
		"Llama-3-8B":                 "Llama-3-8B",
		"llama3-8b":                  "Llama-3-8B",
		"LLAMA_3_8B":                 "Llama-3-8B",
		" llama 3 8b ":               "Llama-3-8B",
		"meta-llama/Meta-Llama-3-8B": "Llama-3-8B",
		"llama3-70b":                 "Llama-3-70B",
		"llama2-7b":                  "Llama-2-7B",
		"meta-llama/Llama-2-7b-hf":   "Llama-2-7B",
		"mistral-7b":                 "Mistral-7B",
		"mistralai/Mistral-7B-v0.1":  "Mistral-7B",
		"yi-6b-200k":                 "Yi-6B-200K",
		"01-ai/Yi-34B-200K":          "Yi-34B-200K",
	}
	for in, want := range tests {
		m, err := Lookup(in)
		if err != nil {
			t.Errorf("Lookup(%q): %v", in, err)
			continue
		}
		if m.Name != want {
			t.Errorf("Lookup(%q) = %s, want %s", in, m.Name, want)
		}
	}
}

func TestLookupUnknown(t *testing.T) {
	// Yi-6B (4K context) is a different model from Yi-6B-200K: no guessing.
	for _, in := range []string{"", "gpt-4", "llama-3-9b", "yi-6b", "llama", "/"} {
		_, err := Lookup(in)
		if !errors.Is(err, ErrUnknownModel) {
			t.Errorf("Lookup(%q) error = %v, want ErrUnknownModel", in, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "unknown model") || !strings.Contains(msg, "known: Llama-2-7B, Llama-3-8B, Llama-3-70B, Mistral-7B, Yi-6B-200K, Yi-34B-200K") {
			t.Errorf("Lookup(%q) error %q does not list the known models", in, msg)
		}
	}
}

func TestModelsSorted(t *testing.T) {
	var names []string
	for _, m := range Models() {
		names = append(names, m.Name)
	}
	want := []string{"Llama-2-7B", "Llama-3-8B", "Llama-3-70B", "Mistral-7B", "Yi-6B-200K", "Yi-34B-200K"}
	if !slices.Equal(names, want) {
		t.Errorf("Models() = %v, want %v", names, want)
	}
	// Callers get a copy: changing it must not change the catalog.
	Models()[0].Layers = 1
	if m, _ := Lookup("Llama-2-7B"); m.Layers != 32 {
		t.Errorf("catalog changed through Models(): %+v", m)
	}
}

func TestNaturalCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"a", "a", 0},
		{"Llama-3-8B", "Llama-3-70B", -1},
		{"Llama-3-70B", "Llama-3-8B", 1},
		{"Llama-2-7B", "llama-3-8b", -1},
		{"yi-6b", "YI-6B", 0},
		{"x9", "x10", -1},
		{"x", "x1", -1},
		{"x1", "x", 1},
		{"x01", "x1", 0},
		{"b", "a1", 1},
		{"1a", "a", -1},
	}
	for _, tt := range tests {
		got := naturalCompare(tt.a, tt.b)
		if (got < 0) != (tt.want < 0) || (got > 0) != (tt.want > 0) {
			t.Errorf("naturalCompare(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestShardTP(t *testing.T) {
	l8, _ := Lookup("Llama-3-8B")
	l2, _ := Lookup("Llama-2-7B")
	yi34, _ := Lookup("Yi-34B-200K")
	tests := []struct {
		m           Model
		tp          int
		kvHeads, qH int
		wantErr     string
	}{
		{m: l8, tp: 1, kvHeads: 8, qH: 32},
		{m: l8, tp: 2, kvHeads: 4, qH: 16},
		{m: l8, tp: 8, kvHeads: 1, qH: 4},
		{m: l2, tp: 32, kvHeads: 1, qH: 1},
		{m: yi34, tp: 8, kvHeads: 1, qH: 7},
		{m: l8, tp: 0, wantErr: "shard Llama-3-8B: invalid tensor-parallel degree 0: it must divide the 8 KV heads (valid: 1, 2, 4, 8)"},
		{m: l8, tp: -2, wantErr: "degree -2"},
		{m: l8, tp: 3, wantErr: "(valid: 1, 2, 4, 8)"},
		{m: l8, tp: 16, wantErr: "(valid: 1, 2, 4, 8)"},
		{m: l2, tp: 3, wantErr: "(valid: 1, 2, 4, 8, 16, 32)"},
	}
	for _, tt := range tests {
		s, err := tt.m.ShardTP(tt.tp)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrInvalidTP) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s.ShardTP(%d) error = %v, want ErrInvalidTP containing %q", tt.m.Name, tt.tp, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s.ShardTP(%d): %v", tt.m.Name, tt.tp, err)
			continue
		}
		want := tt.m
		want.KVHeads, want.QueryHeads, want.TP = tt.kvHeads, tt.qH, tt.tp
		if s != want {
			t.Errorf("%s.ShardTP(%d) = %+v, want %+v", tt.m.Name, tt.tp, s, want)
		}
	}

	// Sharding a shard composes: the degrees multiply.
	s2, _ := l8.ShardTP(2)
	s4, err := s2.ShardTP(2)
	if err != nil || s4.KVHeads != 2 || s4.TP != 4 {
		t.Errorf("ShardTP(2).ShardTP(2) = %+v, %v; want 2 KV heads at TP 4", s4, err)
	}
	if _, err := s4.ShardTP(4); !errors.Is(err, ErrInvalidTP) || !strings.Contains(err.Error(), "(valid: 1, 2)") {
		t.Errorf("sharding 2 KV heads 4 ways: %v", err)
	}
}

func TestBytes(t *testing.T) {
	l8, _ := Lookup("Llama-3-8B")
	l70, _ := Lookup("Llama-3-70B")
	// Llama-3-8B in fp16: 8 heads × 128 × 2 B = 2 KiB per token per layer for
	// K (and as much for V); 128 KiB per token over K and V of 32 layers.
	if got := l8.KVBytesPerTokenPerLayer(2); got != 2048 {
		t.Errorf("Llama-3-8B KV bytes/token/layer fp16 = %d, want 2048", got)
	}
	if got := l8.KVBytesPerToken(2); got != 128<<10 {
		t.Errorf("Llama-3-8B KV bytes/token fp16 = %d, want %d", got, 128<<10)
	}
	if got := l70.KVBytesPerToken(1); got != 160<<10 {
		t.Errorf("Llama-3-70B KV bytes/token fp8 = %d, want %d", got, 160<<10)
	}
	if got := l8.WeightBytes(2); got != 16_060_522_496 {
		t.Errorf("Llama-3-8B weights fp16 = %d, want 16060522496", got)
	}
	s, _ := l70.ShardTP(4)
	if got, want := s.WeightBytes(2), l70.Params*2/4; got != want {
		t.Errorf("Llama-3-70B/tp4 weights = %d, want %d", got, want)
	}
	if got := s.KVBytesPerTokenPerLayer(2); got != 2*128*2 {
		t.Errorf("Llama-3-70B/tp4 KV bytes/token/layer = %d, want 512", got)
	}
	// A hand-built Model without TP set counts as unsharded.
	if got := (Model{Params: 10}).WeightBytes(2); got != 20 {
		t.Errorf("WeightBytes with TP 0 = %d, want 20", got)
	}
}

func TestBadDtypePanics(t *testing.T) {
	l8, _ := Lookup("Llama-3-8B")
	for _, f := range []func(){
		func() { l8.KVBytesPerTokenPerLayer(0) },
		func() { l8.KVBytesPerToken(-1) },
		func() { l8.WeightBytes(0) },
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), "must be positive") {
					t.Errorf("recovered %v, want a dtype panic", r)
				}
			}()
			f()
		}()
	}
}
