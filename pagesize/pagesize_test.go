package pagesize

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]Size{
		"64k": Size64K, "64kb": Size64K, "64KiB": Size64K, "64K": Size64K, "65536": Size64K,
		"128k": Size128K, "128KB": Size128K, "256kib": Size256K, " 256k ": Size256K,
		"2m": Size2M, "2MB": Size2M, "2MiB": Size2M, "2097152": Size2M, "2048k": Size2M,
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := []string{"", "0", "4k", "1m", "64", "64kbb", "k", "2g", "-64k", "64 k",
		"99999999999999999999", "18014398509481984k", "3m", "1.5m"}
	for _, in := range bad {
		_, err := Parse(in)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("Parse(%q): err = %v, want ErrUnsupported", in, err)
			continue
		}
		if !strings.Contains(err.Error(), "64k, 128k, 256k, 2m") {
			t.Errorf("Parse(%q): error %q does not list the valid sizes", in, err)
		}
	}
}

func TestStringRoundTrip(t *testing.T) {
	want := map[Size]string{Size64K: "64KiB", Size128K: "128KiB", Size256K: "256KiB", Size2M: "2MiB"}
	for _, s := range All() {
		if s.String() != want[s] {
			t.Errorf("%d prints %q, want %q", uint64(s), s.String(), want[s])
		}
		for _, text := range []string{s.String(), s.Short()} {
			back, err := Parse(text)
			if err != nil || back != s {
				t.Errorf("Parse(%q) = %v, %v; want %v", text, back, err, s)
			}
		}
	}
	if got := Size(12345).String(); got != "12345B" {
		t.Errorf("odd size prints %q", got)
	}
}

func TestArithmetic(t *testing.T) {
	s := Size64K
	cases := []struct{ n, pages, up uint64 }{{0, 0, 0}, {1, 1, 65536}, {65536, 1, 65536}, {65537, 2, 131072}}
	for _, c := range cases {
		if s.Pages(c.n) != c.pages || s.RoundUp(c.n) != c.up {
			t.Errorf("n=%d: Pages=%d RoundUp=%d, want %d %d", c.n, s.Pages(c.n), s.RoundUp(c.n), c.pages, c.up)
		}
	}
	if !s.Aligned(131072) || s.Aligned(4096) {
		t.Error("Aligned is wrong")
	}
}

func TestParseList(t *testing.T) {
	got, err := ParseList("64k,256k,2m")
	if err != nil || len(got) != 3 || got[0] != Size64K || got[1] != Size256K || got[2] != Size2M {
		t.Fatalf("ParseList = %v, %v", got, err)
	}
	for _, bad := range []string{"64k,,2m", "64k,64KiB", "", "64k,3m"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) succeeded", bad)
		}
	}
}

func TestJSONAndFlag(t *testing.T) {
	b, err := json.Marshal(struct{ P Size }{Size128K})
	if err != nil || string(b) != `{"P":"128KiB"}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var v struct{ P Size }
	if err := json.Unmarshal([]byte(`{"P":"2m"}`), &v); err != nil || v.P != Size2M {
		t.Fatalf("unmarshal = %v, %v", v.P, err)
	}
	if err := json.Unmarshal([]byte(`{"P":"5m"}`), &v); err == nil {
		t.Fatal("unmarshal of 5m succeeded")
	}
	var f Size
	if err := f.Set("256k"); err != nil || f != Size256K || f.Type() != "pagesize" {
		t.Fatalf("Set: %v %v", f, err)
	}
	if err := f.Set("7k"); err == nil || f != Size256K {
		t.Fatalf("bad Set changed the value or succeeded: %v %v", f, err)
	}
}
