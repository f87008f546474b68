package trace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/internal/testenv"
	"github.com/vattn/vattn/trace"
)

func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedEBPF(t, "vattnctl trace")
}

// The test's ioctl command on /dev/null: a number no driver knows, so that
// other processes' ioctls on /dev/null cannot be mistaken for the test's.
const testCmd = 0x7a7a0000 + 0x10

func ioctls(t *testing.T, n int) {
	t.Helper()
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range n {
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), testCmd, 0); errno != unix.ENOTTY {
			t.Fatalf("ioctl: errno %v, want ENOTTY", errno)
		}
	}
}

// lineWriter passes stderr lines to a channel, so a test can wait for
// "Tracing...".
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- strings.TrimSpace(line):
		default:
		}
	}
}

// start runs the command until the returned stop is called, and returns once
// it traces. stop returns stdout and Run's error.
func start(t *testing.T, opts *Options) (stop func() (string, error)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errOut := &lineWriter{lines: make(chan string, 100)}
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, &out, errOut) }()
	for {
		select {
		case line := <-errOut.lines:
			if line == "Tracing... Hit Ctrl-C to end." {
				return func() (string, error) {
					cancel()
					err := <-done
					return out.String(), err
				}
			}
		case err := <-done:
			cancel()
			t.Fatalf("Run ended before tracing: %v", err)
		}
	}
}

func TestJSONFinalIntervalOnCancel(t *testing.T) {
	needRoot(t)
	stop := start(t, &Options{Sources: "ioctl", Device: "/dev/null", Unit: "ns", Format: cli.JSON})
	ioctls(t, 25)
	out, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1 object: %s", len(lines), out)
	}
	var iv Interval
	if err := json.Unmarshal([]byte(lines[0]), &iv); err != nil {
		t.Fatal(err)
	}
	if !iv.Final || iv.Unit != "ns" || len(iv.Sources) != 1 || !iv.Sources[0].Attached {
		t.Errorf("interval = %+v", iv)
	}
	var op *Op
	for i := range iv.Ops {
		if iv.Ops[i].Op == trace.IoctlName(testCmd) {
			op = &iv.Ops[i]
		}
	}
	if op == nil {
		t.Fatalf("no %s in %s", trace.IoctlName(testCmd), out)
	}
	var inBuckets uint64
	for _, b := range op.Buckets {
		inBuckets += b.Count
	}
	if op.Source != "ioctl" || op.Count != 25 || op.Errors != 25 || inBuckets != 25 || op.SumNs == 0 || op.P50Ns <= 0 || op.P99Ns < op.P50Ns {
		t.Errorf("op = %+v", op)
	}
}

func TestTableOutput(t *testing.T) {
	needRoot(t)
	stop := start(t, &Options{Sources: "ioctl", Device: "1:3", Unit: "us", Format: cli.Table})
	ioctls(t, 7)
	out, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	name := trace.IoctlName(testCmd)
	for _, want := range []string{"op = " + name + " [ioctl]", "usecs", ": count    distribution", "|****************************************|", "AVG(us)", "estimated from the log2 buckets"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	found := false
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 8 && f[0] == name {
			found = true
			if f[1] != "ioctl" || f[3] != "7" || f[4] != "7" {
				t.Errorf("summary row %q: want ioctl, count 7, errors 7", line)
			}
		}
	}
	if !found {
		t.Errorf("no summary row for %s:\n%s", name, out)
	}
}

func TestIntervalCount(t *testing.T) {
	needRoot(t)
	var out bytes.Buffer
	err := Run(context.Background(), &Options{Sources: "ioctl", Device: "/dev/null", Unit: "ms", Interval: 20 * time.Millisecond, Count: 3, Format: cli.JSON}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	n := 0
	for ; ; n++ {
		var iv Interval
		if err := dec.Decode(&iv); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if iv.Final || iv.Seconds <= 0 || iv.Unit != "ms" {
			t.Errorf("interval %d = %+v", n, iv)
		}
	}
	if n != 3 {
		t.Errorf("%d intervals, want 3", n)
	}
}

func TestPrometheus(t *testing.T) {
	needRoot(t)
	addrs := make(chan net.Addr, 1)
	opts := &Options{Sources: "ioctl", Device: "/dev/null", Unit: "us", Prometheus: "127.0.0.1:0", listening: func(a net.Addr) { addrs <- a }}
	stop := start(t, opts)
	defer stop()
	addr := <-addrs
	ioctls(t, 13)
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", addr))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bufio.NewReader(resp.Body))
	if err != nil {
		t.Fatal(err)
	}
	fam := families["vattn_map_latency_seconds"]
	if fam == nil || fam.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("vattn_map_latency_seconds missing or not a histogram: %v", fam)
	}
	var m *dto.Metric
	for _, x := range fam.Metric {
		labels := map[string]string{}
		for _, l := range x.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["op"] == trace.IoctlName(testCmd) && labels["source"] == "ioctl" {
			m = x
			if _, ok := labels["UUID"]; !ok {
				t.Errorf("no UUID label: %v", labels)
			}
		}
	}
	if m == nil {
		t.Fatalf("no series for op %s", trace.IoctlName(testCmd))
	}
	h := m.GetHistogram()
	if h.GetSampleCount() != 13 || h.GetSampleSum() <= 0 {
		t.Errorf("count %d sum %g, want 13 and > 0", h.GetSampleCount(), h.GetSampleSum())
	}
	prev, prevLE := uint64(0), 0.0
	for _, b := range h.Bucket {
		if b.GetUpperBound() <= prevLE || b.GetCumulativeCount() < prev {
			t.Errorf("buckets not increasing at le=%g", b.GetUpperBound())
		}
		prev, prevLE = b.GetCumulativeCount(), b.GetUpperBound()
	}
	if first := h.Bucket[0].GetUpperBound(); first != 2e-6 {
		t.Errorf("first bucket le=%g, want 2e-06 (slot 0 of µs)", first)
	}
	if prevLE < 60 || prev != 13 {
		t.Errorf("last bucket le=%g cumulative %d, want >= 60s and 13", prevLE, prev)
	}
	errs := families["vattn_map_errors_total"]
	if errs == nil {
		t.Fatal("no vattn_map_errors_total")
	}
	found := false
	for _, x := range errs.Metric {
		for _, l := range x.Label {
			if l.GetName() == "op" && l.GetValue() == trace.IoctlName(testCmd) {
				found = true
				if x.GetCounter().GetValue() != 13 {
					t.Errorf("errors = %g, want 13 (ENOTTY)", x.GetCounter().GetValue())
				}
			}
		}
	}
	if !found {
		t.Error("no error series for the test's op")
	}
}
