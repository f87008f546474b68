package workload

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Shape is a request-length distribution for Synthetic: a mixture of two
// kinds of request, Body and, with probability TailWeight, Tail. The arxiv
// summarization trace needs the second kind: about 5% of its requests have
// a short paper and a long summary (decode median ~2500 tokens, prefill
// median ~400), and those make its decode distribution heavy-tailed.
//
// A request whose Prefill+Decode exceeds MaxTotal (when positive) is redrawn
// whole, the way the arxiv traces were made by dropping longer papers.
type Shape struct {
	Name       string
	Body       Lengths
	Tail       Lengths
	TailWeight float64
	MaxTotal   int
}

// Lengths is the length distribution of one kind of request.
//
// Prefill lengths are PrefillMin + (PrefillMax−PrefillMin)·X with X drawn
// from a Kumaraswamy(PrefillA, PrefillB) distribution on [0, 1]: beta-like
// (bounded, skewed either way), with a closed-form inverse CDF so one uniform
// draw makes one length.
//
// Decode lengths are log-normal with median DecodeMedian and log-space
// standard deviation DecodeSigma; draws outside [DecodeMin, DecodeMax] are
// redrawn. Prefill and decode are drawn independently.
type Lengths struct {
	PrefillMin, PrefillMax    int
	PrefillA, PrefillB        float64
	DecodeMin, DecodeMax      int
	DecodeMedian, DecodeSigma float64
}

// The built-in shapes. Their parameters were fitted (a random local search
// over the parameters, scoring the relative error of the mean and the
// 1st–99th percentiles) to the public traces in the vAttention artifact
// (shared/data/traces/README.md); synthetic_test.go checks that 20,000 draws
// land within 10% of each trace's mean, median and p90 and never pass its
// maximum.
var (
	// ShapeArxiv resembles arxiv_summarization_stats_llama2_tokenizer_filtered_v2:
	// prefill mean/p50/p90/max 2588/2730/3702/4054, decode 291/167/372/4056,
	// no request above 4096 tokens.
	ShapeArxiv = Shape{
		Name: "arxiv",
		Body: Lengths{PrefillMin: 1, PrefillMax: 4054, PrefillA: 2.55, PrefillB: 1.18,
			DecodeMin: 5, DecodeMax: 4056, DecodeMedian: 166, DecodeSigma: 0.55},
		Tail: Lengths{PrefillMin: 1, PrefillMax: 4054, PrefillA: 0.70, PrefillB: 3.6,
			DecodeMin: 5, DecodeMax: 4056, DecodeMedian: 2720, DecodeSigma: 0.40},
		TailWeight: 0.048,
		MaxTotal:   4096,
	}
	// ShapeArxivLong resembles arxiv_long_online: prefill mean/p50/p90/max
	// 29567/27843/38489/45819 (none below 22912), decode 363/318/571/10845.
	ShapeArxivLong = Shape{
		Name: "arxiv-long",
		Body: Lengths{PrefillMin: 22912, PrefillMax: 45819, PrefillA: 0.72, PrefillB: 1.67,
			DecodeMin: 6, DecodeMax: 10845, DecodeMedian: 296, DecodeSigma: 0.51},
		Tail: Lengths{PrefillMin: 22912, PrefillMax: 45819, PrefillA: 0.72, PrefillB: 1.67,
			DecodeMin: 6, DecodeMax: 10845, DecodeMedian: 975, DecodeSigma: 1.7},
		TailWeight: 0.012,
	}
)

// Shapes lists the built-in shapes; ShapeArxiv, the default, first.
func Shapes() []Shape { return []Shape{ShapeArxiv, ShapeArxivLong} }

// ShapeByName finds a built-in shape by name (case-insensitive).
func ShapeByName(name string) (Shape, error) {
	var names []string
	for _, s := range Shapes() {
		if strings.EqualFold(s.Name, name) {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Shape{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownShape, name, strings.Join(names, ", "))
}

// Errors of the synthetic generator.
var (
	ErrUnknownShape  = errors.New("unknown shape")
	ErrInvalidShape  = errors.New("invalid shape")
	ErrInvalidConfig = errors.New("invalid synthetic trace config")
)

// SyntheticConfig says what trace Synthetic draws.
type SyntheticConfig struct {
	Requests int   // how many requests; at least 1
	Seed     int64 // the same seed (and config) always gives the same trace
	Shape    Shape // the zero Shape means ShapeArxiv
	// MaxContext, when positive, also bounds Prefill+Decode: requests that
	// would not fit are redrawn, so the trace keeps its length and follows
	// the shape conditioned on fitting (no request is truncated).
	MaxContext int
}

// maxDraws bounds the redraws for one request, so a shape whose limits
// exclude (nearly) everything fails instead of spinning.
const maxDraws = 10000

// pcgStream is the PCG increment seed; fixed so a trace depends on Seed only.
const pcgStream = 0x7661_7474_6e5f_7772 // "vattn_wr"

// Synthetic draws a reproducible trace from cfg.Shape using a PCG generator
// seeded with cfg.Seed.
func Synthetic(cfg SyntheticConfig) (Trace, error) {
	if cfg.Requests < 1 {
		return Trace{}, fmt.Errorf("synthetic trace: %w: %d requests, need at least 1", ErrInvalidConfig, cfg.Requests)
	}
	if cfg.MaxContext < 0 {
		return Trace{}, fmt.Errorf("synthetic trace: %w: max context %d is negative", ErrInvalidConfig, cfg.MaxContext)
	}
	sh := cfg.Shape
	if sh == (Shape{}) {
		sh = ShapeArxiv
	}
	if err := sh.validate(); err != nil {
		return Trace{}, fmt.Errorf("synthetic trace: %w", err)
	}
	limit := sh.MaxTotal
	if cfg.MaxContext > 0 && (limit == 0 || cfg.MaxContext < limit) {
		limit = cfg.MaxContext
	}
	if limit > 0 && limit < sh.minTotal() {
		return Trace{}, fmt.Errorf("synthetic trace: %w: shape %s needs at least %d tokens a request, max context is %d",
			ErrInvalidConfig, sh.Name, sh.minTotal(), limit)
	}

	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), pcgStream))
	t := Trace{
		Name:     fmt.Sprintf("synthetic-%s-seed%d", sh.Name, cfg.Seed),
		Requests: make([]Request, cfg.Requests),
	}
	for i := range t.Requests {
		r, ok := sh.draw(rng, limit)
		if !ok {
			return Trace{}, fmt.Errorf("synthetic trace: %w: shape %s: no request within limits after %d draws (max total %d)",
				ErrInvalidConfig, sh.Name, maxDraws, limit)
		}
		t.Requests[i] = r
	}
	return t, nil
}

// draw returns one request with Prefill+Decode ≤ limit (0: unlimited).
func (sh Shape) draw(rng *rand.Rand, limit int) (Request, bool) {
	for range maxDraws {
		l := &sh.Body
		if sh.TailWeight > 0 && rng.Float64() < sh.TailWeight {
			l = &sh.Tail
		}
		x := kumaraswamy(rng.Float64(), l.PrefillA, l.PrefillB)
		p := l.PrefillMin + int(math.Round(x*float64(l.PrefillMax-l.PrefillMin)))
		d, ok := l.drawDecode(rng)
		if !ok {
			return Request{}, false
		}
		if limit == 0 || p+d <= limit {
			return Request{Prefill: p, Decode: d}, true
		}
	}
	return Request{}, false
}

func (l *Lengths) drawDecode(rng *rand.Rand) (int, bool) {
	for range maxDraws {
		v := l.DecodeMedian * math.Exp(l.DecodeSigma*rng.NormFloat64())
		if v >= float64(l.DecodeMin)-0.5 && v < float64(l.DecodeMax)+0.5 {
			return int(math.Round(v)), true
		}
	}
	return 0, false
}

// kumaraswamy maps a uniform u in [0, 1) through the inverse CDF of the
// Kumaraswamy(a, b) distribution.
func kumaraswamy(u, a, b float64) float64 {
	return math.Pow(1-math.Pow(1-u, 1/b), 1/a)
}

func (sh Shape) validate() error {
	if !(sh.TailWeight >= 0 && sh.TailWeight <= 1) {
		return fmt.Errorf("%w %s: tail weight %g: need 0 ≤ weight ≤ 1", ErrInvalidShape, sh.Name, sh.TailWeight)
	}
	if sh.MaxTotal < 0 {
		return fmt.Errorf("%w %s: max total %d is negative", ErrInvalidShape, sh.Name, sh.MaxTotal)
	}
	if err := sh.Body.validate(); err != nil {
		return fmt.Errorf("%w %s: body: %w", ErrInvalidShape, sh.Name, err)
	}
	if sh.TailWeight > 0 {
		if err := sh.Tail.validate(); err != nil {
			return fmt.Errorf("%w %s: tail: %w", ErrInvalidShape, sh.Name, err)
		}
	}
	return nil
}

// minTotal is the shortest request the shape can make.
func (sh Shape) minTotal() int {
	m := sh.Body.PrefillMin + sh.Body.DecodeMin
	if sh.TailWeight > 0 {
		m = min(m, sh.Tail.PrefillMin+sh.Tail.DecodeMin)
	}
	return m
}

func (l Lengths) validate() error {
	positive := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }
	switch {
	case l.PrefillMin < 1 || l.PrefillMax < l.PrefillMin:
		return fmt.Errorf("prefill range [%d, %d]: need 1 ≤ min ≤ max", l.PrefillMin, l.PrefillMax)
	case !positive(l.PrefillA) || !positive(l.PrefillB):
		return fmt.Errorf("prefill Kumaraswamy parameters a=%g b=%g: need both positive", l.PrefillA, l.PrefillB)
	case l.DecodeMin < 0 || l.DecodeMax < l.DecodeMin:
		return fmt.Errorf("decode range [%d, %d]: need 0 ≤ min ≤ max", l.DecodeMin, l.DecodeMax)
	case !positive(l.DecodeMedian) || !(l.DecodeSigma >= 0 && !math.IsInf(l.DecodeSigma, 0)):
		return fmt.Errorf("decode median %g sigma %g: need median > 0, sigma ≥ 0", l.DecodeMedian, l.DecodeSigma)
	}
	return nil
}
