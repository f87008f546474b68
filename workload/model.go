package workload

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Model is the part of a transformer's shape that sizes its KV cache and its
// weights. All counts are for the whole model unless ShardTP made it a
// per-rank view.
type Model struct {
	Name       string
	Layers     int
	KVHeads    int // key/value heads (fewer than QueryHeads under grouped-query attention)
	HeadDim    int
	QueryHeads int
	Params     uint64 // parameter count
	MaxContext int    // the model's native context length (max_position_embeddings)
	// TP is the tensor-parallel degree this view is sharded for; 1 for the
	// whole model.
	TP int
}

// Sentinel errors of the model catalog.
var (
	// ErrUnknownModel: the name matches no model in the catalog.
	ErrUnknownModel = errors.New("unknown model")
	// ErrInvalidTP: the tensor-parallel degree does not divide the KV heads.
	ErrInvalidTP = errors.New("invalid tensor-parallel degree")
)

type catalogEntry struct {
	Model
	// aliases are spellings that normalizeName does not already fold onto
	// Name: Hugging Face repository names with a prefix or suffix.
	aliases []string
}

// The facts are from each model's public config.json (num_hidden_layers,
// num_key_value_heads, num_attention_heads, hidden_size/num_attention_heads,
// max_position_embeddings); parameter counts are what those shapes add up to
// (model_test.go recomputes them from vocabulary, hidden and MLP sizes).
var catalog = []catalogEntry{
	{Model{Name: "Llama-2-7B", Layers: 32, KVHeads: 32, HeadDim: 128, QueryHeads: 32,
		Params: 6_738_415_616, MaxContext: 4096, TP: 1},
		[]string{"meta-llama/Llama-2-7b-hf"}},
	{Model{Name: "Llama-3-8B", Layers: 32, KVHeads: 8, HeadDim: 128, QueryHeads: 32,
		Params: 8_030_261_248, MaxContext: 8192, TP: 1},
		[]string{"meta-llama/Meta-Llama-3-8B"}},
	{Model{Name: "Llama-3-70B", Layers: 80, KVHeads: 8, HeadDim: 128, QueryHeads: 64,
		Params: 70_553_706_496, MaxContext: 8192, TP: 1},
		[]string{"meta-llama/Meta-Llama-3-70B"}},
	{Model{Name: "Mistral-7B", Layers: 32, KVHeads: 8, HeadDim: 128, QueryHeads: 32,
		Params: 7_241_732_096, MaxContext: 32768, TP: 1},
		[]string{"mistralai/Mistral-7B-v0.1"}},
	{Model{Name: "Yi-6B-200K", Layers: 32, KVHeads: 4, HeadDim: 128, QueryHeads: 32,
		Params: 6_061_035_520, MaxContext: 200000, TP: 1},
		nil},
	{Model{Name: "Yi-34B-200K", Layers: 60, KVHeads: 8, HeadDim: 128, QueryHeads: 56,
		Params: 34_388_917_248, MaxContext: 200000, TP: 1},
		nil},
}

// normalizeName folds the spellings of one model to one key: case, dashes,
// dots, underscores and a repository owner ("meta-llama/") do not matter.
func normalizeName(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Lookup finds a model by name, ignoring case and punctuation, so
// "llama3-8b", "Llama-3-8B" and "meta-llama/Meta-Llama-3-8B" all find
// Llama-3-8B. An unknown name is an error wrapping ErrUnknownModel that lists
// the known names.
func Lookup(name string) (Model, error) {
	key := normalizeName(name)
	if key != "" {
		for _, e := range catalog {
			if normalizeName(e.Name) == key {
				return e.Model, nil
			}
			for _, a := range e.aliases {
				if normalizeName(a) == key {
					return e.Model, nil
				}
			}
		}
	}
	names := make([]string, 0, len(catalog))
	for _, m := range Models() {
		names = append(names, m.Name)
	}
	return Model{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownModel, name, strings.Join(names, ", "))
}

// Models returns the catalog sorted by name, numbers in names compared by
// value (Llama-3-8B before Llama-3-70B).
func Models() []Model {
	ms := make([]Model, len(catalog))
	for i, e := range catalog {
		ms[i] = e.Model
	}
	slices.SortFunc(ms, func(a, b Model) int { return naturalCompare(a.Name, b.Name) })
	return ms
}

// naturalCompare orders strings case-insensitively, comparing runs of digits
// as numbers.
func naturalCompare(a, b string) int {
	a, b = strings.ToLower(a), strings.ToLower(b)
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da > 0 && db > 0 {
			na, _ := strconv.ParseUint(a[:da], 10, 64)
			nb, _ := strconv.ParseUint(b[:db], 10, 64)
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			if a[0] < b[0] {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitPrefix(s string) int {
	n := 0
	for n < len(s) && n < 18 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// ShardTP returns the per-rank view of m under tensor parallelism of degree
// tp: each rank holds KVHeads/tp key/value heads and QueryHeads/tp query
// heads (attention heads are what tensor parallelism splits). tp must be at
// least 1 and divide KVHeads; otherwise the error wraps ErrInvalidTP and
// lists the degrees that work.
func (m Model) ShardTP(tp int) (Model, error) {
	if tp < 1 || m.KVHeads%tp != 0 || m.QueryHeads%tp != 0 {
		var valid []string
		for d := 1; d <= m.KVHeads; d++ {
			if m.KVHeads%d == 0 && m.QueryHeads%d == 0 {
				valid = append(valid, strconv.Itoa(d))
			}
		}
		return Model{}, fmt.Errorf("shard %s: %w %d: it must divide the %d KV heads (valid: %s)",
			m.Name, ErrInvalidTP, tp, m.KVHeads, strings.Join(valid, ", "))
	}
	s := m
	s.KVHeads /= tp
	s.QueryHeads /= tp
	s.TP = max(m.TP, 1) * tp
	return s, nil
}

// KVBytesPerTokenPerLayer is the size of one token's K (or, equally, its V)
// in one layer: KVHeads × HeadDim × dtypeBytes. It panics if dtypeBytes is
// not positive, which is a programming error.
func (m Model) KVBytesPerTokenPerLayer(dtypeBytes int) uint64 {
	checkDtype(dtypeBytes)
	return uint64(m.KVHeads) * uint64(m.HeadDim) * uint64(dtypeBytes)
}

// KVBytesPerToken is what one token costs in the whole KV cache: K and V in
// every layer.
func (m Model) KVBytesPerToken(dtypeBytes int) uint64 {
	return 2 * uint64(m.Layers) * m.KVBytesPerTokenPerLayer(dtypeBytes)
}

// WeightBytes is the memory the weights take at dtypeBytes per parameter;
// for a ShardTP view it is one rank's share (Params/TP, counting the few
// replicated norm weights as split too, which they are not: a few hundred KiB
// off at most).
func (m Model) WeightBytes(dtypeBytes int) uint64 {
	checkDtype(dtypeBytes)
	return m.Params * uint64(dtypeBytes) / uint64(max(m.TP, 1))
}

func checkDtype(dtypeBytes int) {
	if dtypeBytes <= 0 {
		panic(fmt.Sprintf("workload: dtype size %d bytes: must be positive", dtypeBytes))
	}
}
