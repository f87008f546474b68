// Command gensynth writes a trace from the project's synthetic generator
// (workload.Synthetic) as CSV with the arxiv trace's columns, for the
// end-to-end benchmark (bench/e2e/e2e.py --synthetic FILE), which runs
// where Go is not installed.
//
//	go run ./bench/e2e/gensynth -n 512 -seed 1 -max-context 4096 > synthetic.csv
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/vattn/vattn/workload"
)

func main() {
	n := flag.Int("n", 512, "requests")
	seed := flag.Int64("seed", 1, "seed")
	maxCtx := flag.Int("max-context", 4096, "bound on prefill+decode")
	shape := flag.String("shape", "arxiv", "length shape (workload.ShapeByName)")
	flag.Parse()
	if err := run(os.Stdout, *n, *seed, *maxCtx, *shape); err != nil {
		fmt.Fprintln(os.Stderr, "gensynth:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, n int, seed int64, maxCtx int, shape string) error {
	sh, err := workload.ShapeByName(shape)
	if err != nil {
		return err
	}
	tr, err := workload.Synthetic(workload.SyntheticConfig{Requests: n, Seed: seed, Shape: sh, MaxContext: maxCtx})
	if err != nil {
		return err
	}
	w := csv.NewWriter(out)
	if err := w.Write([]string{"num_prefill_tokens", "num_decode_tokens"}); err != nil {
		return err
	}
	for _, r := range tr.Requests {
		if err := w.Write([]string{strconv.Itoa(r.Prefill), strconv.Itoa(r.Decode)}); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}
