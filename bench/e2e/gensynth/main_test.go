package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"strconv"
	"testing"

	"github.com/vattn/vattn/workload"
)

func TestRun(t *testing.T) {
	var a, b bytes.Buffer
	if err := run(&a, 50, 3, 4096, "arxiv"); err != nil {
		t.Fatal(err)
	}
	if err := run(&b, 50, 3, 4096, "arxiv"); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatal("the same seed gave different traces")
	}
	rows, err := csv.NewReader(&a).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 51 || rows[0][0] != "num_prefill_tokens" || rows[0][1] != "num_decode_tokens" {
		t.Fatalf("got %d rows, header %v", len(rows), rows[0])
	}
	for _, r := range rows[1:] {
		p, _ := strconv.Atoi(r[0])
		d, _ := strconv.Atoi(r[1])
		if p < 1 || d < 1 || p+d > 4096 {
			t.Fatalf("row %v outside (0, 4096]", r)
		}
	}
}

func TestRunErrors(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, 10, 1, 4096, "nope"); err == nil {
		t.Fatal("unknown shape accepted")
	}
	if err := run(&out, 0, 1, 4096, "arxiv"); !errors.Is(err, workload.ErrInvalidConfig) {
		t.Fatalf("zero requests: %v", err)
	}
}
