package driver

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const twoHunks = `a header line
diff -u a/d/f.c b/d/f.c
--- a/d/f.c
+++ b/d/f.c
@@ -2,3 +2,4 @@ int main(void)
 two
 three
+added
 four
@@ -8,3 +9,3 @@
 eight
-nine
+NINE
 ten
`

func numbered(n int, extra ...string) string {
	var b strings.Builder
	b.WriteString(strings.Join(extra, ""))
	for i := 1; i <= n; i++ {
		b.WriteString([]string{"", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"}[i] + "\n")
	}
	return b.String()
}

func TestApplyOffsetsAndRefresh(t *testing.T) {
	p, err := ParsePatch("x.patch", []byte(twoHunks))
	if err != nil {
		t.Fatal(err)
	}
	if p.Header != "a header line\n" || len(p.Files) != 1 || p.Files[0].Path != "d/f.c" || len(p.Files[0].Hunks) != 2 {
		t.Fatalf("parsed %+v", p)
	}
	if string(p.Format()) != twoHunks {
		t.Fatalf("Format does not give the patch back:\n%s", p.Format())
	}
	// Two lines more above: both hunks sit two lines lower.
	tree := &Tree{Files: map[string]string{"d/f.c": numbered(12, "x\n", "y\n")}}
	res, err := tree.Apply([]*Patch{p})
	if err != nil {
		t.Fatal(err)
	}
	if got := []int{res.Hunks[0].At, res.Hunks[0].Offset, res.Hunks[1].At, res.Hunks[1].Offset}; !reflect.DeepEqual(got, []int{4, 2, 10, 2}) || res.Exact() {
		t.Fatalf("hunks %+v", res.Hunks)
	}
	want := "x\ny\none\ntwo\nthree\nadded\nfour\nfive\nsix\nseven\neight\nNINE\nten\neleven\ntwelve\n"
	if tree.Files["d/f.c"] != want {
		t.Fatalf("result:\n%s", tree.Files["d/f.c"])
	}
	// The refreshed patch names the lines of this tree: it applies at offset 0.
	refreshed := string(p.Format())
	if !strings.Contains(refreshed, "@@ -4,3 +4,4 @@ int main(void)\n") || !strings.Contains(refreshed, "@@ -10,3 +11,3 @@\n") {
		t.Fatalf("refreshed:\n%s", refreshed)
	}
	again, err := ParsePatch("x.patch", []byte(refreshed))
	if err != nil {
		t.Fatal(err)
	}
	res, err = (&Tree{Files: map[string]string{"d/f.c": numbered(12, "x\n", "y\n")}}).Apply([]*Patch{again})
	if err != nil || !res.Exact() {
		t.Fatalf("refreshed patch: %v %+v", err, res)
	}
}

func TestApplyRefusesFuzzAndAmbiguity(t *testing.T) {
	cases := []struct {
		name, content string
		found         int
	}{
		{"a context line differs (patch --fuzz=1 would apply it)", strings.Replace(numbered(12), "two\n", "TWO\n", 1), 0},
		{"the old text occurs twice", numbered(12) + "two\nthree\nfour\n", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := ParsePatch("x.patch", []byte(twoHunks))
			tree := &Tree{Files: map[string]string{"d/f.c": c.content}}
			_, err := tree.Apply([]*Patch{p})
			var he *HunkError
			if !errors.As(err, &he) || !errors.Is(err, ErrNoFuzz) || he.Found != c.found || he.Hunk != 1 || he.File != "d/f.c" {
				t.Fatalf("err = %v", err)
			}
			if tree.Files["d/f.c"] != c.content {
				t.Error("a failed apply changed the tree")
			}
		})
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	good, _ := ParsePatch("1.patch", []byte(twoHunks))
	bad, err := ParsePatch("2.patch", []byte("--- a/d/g.c\n+++ b/d/g.c\n@@ -1,2 +1,2 @@\n-not there\n+x\n context\n"))
	if err != nil {
		t.Fatal(err)
	}
	tree := &Tree{Files: map[string]string{"d/f.c": numbered(12), "d/g.c": "a\nb\n"}}
	if _, err := tree.Apply([]*Patch{good, bad}); err == nil || !strings.Contains(err.Error(), "2.patch: d/g.c hunk 1 (line 1)") {
		t.Fatalf("err = %v", err)
	}
	if tree.Files["d/f.c"] != numbered(12) {
		t.Error("the first patch's changes stayed after the second failed")
	}
	if _, err := tree.Apply([]*Patch{good}); err != nil {
		t.Fatalf("the good patch alone: %v", err)
	}
	missing, _ := ParsePatch("3.patch", []byte("--- a/d/h.c\n+++ b/d/h.c\n@@ -1 +1 @@\n-a\n+b\n"))
	if _, err := tree.Apply([]*Patch{missing}); err == nil || !strings.Contains(err.Error(), "d/h.c: no such file") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParsePatchRejects(t *testing.T) {
	for name, text := range map[string]string{
		"counts do not match the header": "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-this line is not there\n+nor this\n context\n",
		"no newline marker":              "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n",
		"no file":                        "just text\n",
		"removal":                        "--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n",
		"path without a component":       "--- f\n+++ f\n@@ -1 +1 @@\n-a\n+b\n",
	} {
		if _, err := ParsePatch(name, []byte(text)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestCompareAndNearest(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"580.95.05", "580.105.08", -1}, {"580.142", "580.159.04", -1}, {"580.142", "580.142", 0},
		{"580.142", "580.142.01", -1}, {"595.45.04", "590.48.01", 1},
	} {
		if got := CompareVersions(c.a, c.b); (got > 0) != (c.want > 0) || (got < 0) != (c.want < 0) {
			t.Errorf("CompareVersions(%s, %s) = %d", c.a, c.b, got)
		}
	}
	for v, want := range map[string]string{
		"535.261.03": "535.261.03", // its own
		"535.288.01": "535.261.03", // newest older one
		"535.43.02":  "535.261.03", // none older: oldest newer one
		"550.163.99": "550.163.01",
		"570.195.03": "570.211.01",
		"595.58.03":  "595.45.04",
		"560.35.03":  "",
	} {
		got, ok := NearestSeries(v)
		if got != want || ok != (want != "") {
			t.Errorf("NearestSeries(%s) = %q, %v; want %q", v, got, ok, want)
		}
	}
}

// A version without a series of its own whose source lacks a hunk's text is refused,
// naming the nearest proven version; with the text in place the nearest series fits.
func TestFitSourceNearest(t *testing.T) {
	dir := t.TempDir()
	write := func(files map[string]string) {
		for f, c := range files {
			p := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	pre := preimage(t, "550.163.01")
	write(pre)
	write(map[string]string{"Kbuild": `ccflags-y += -DNV_VERSION_STRING=\"550.170.01\"` + "\n"})
	src, err := InspectSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	fit, err := FitSource(src)
	if err != nil || fit.Series != "550.163.01" || fit.Source != "550.170.01" || fit.Exact() {
		t.Fatalf("fit = %+v, %v", fit, err)
	}
	write(map[string]string{"nvidia-uvm/uvm.c": strings.Replace(pre["nvidia-uvm/uvm.c"], "Try the test ioctls", "Try the test ioctl", 1)})
	_, err = FitSource(src)
	var nf *NoFitError
	if !errors.As(err, &nf) || nf.Nearest != "550.163.01" || !errors.Is(err, ErrUnsupportedVersion) || !errors.Is(err, ErrNoFuzz) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"NVIDIA 550.170.01 has no vattn series of its own", "nearest proven version, 550.163.01", "nvidia-uvm/uvm.c hunk", "needs a port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// The carried series against the real sources, where scripts/kernel-deps.sh (CI's deps
// tier) unpacked them or a developer unpacked a tag: each proven version's own series
// applies at exactly its lines, and the tree presented as another version of its
// branch (its version string changed) gets the same series through NearestSeries.
func TestSeriesFitRealSources(t *testing.T) {
	cache := filepath.Join("..", ".cache", "kernel")
	trees := map[string]string{
		"535.261.03": filepath.Join(cache, "src", "535.261.03"),
		"550.163.01": filepath.Join(cache, "src", "550.163.01"),
	}
	for _, v := range SupportedVersions() {
		if _, ok := trees[v]; !ok {
			trees[v] = filepath.Join(cache, "tags", v, "kernel-open") // by hand: git archive <tag> kernel-open
		}
	}
	ran := 0
	for v, dir := range trees {
		if _, err := os.Stat(filepath.Join(dir, "Kbuild")); err != nil {
			continue
		}
		ran++
		src, err := InspectSource(dir)
		if err != nil || src.Version != v {
			t.Fatalf("%s: %+v %v", dir, src, err)
		}
		fit, err := FitSource(src)
		if err != nil || !fit.Exact() {
			t.Errorf("%s: own series: %+v %v", v, fit, err)
			continue
		}
		parts := strings.Split(v, ".")
		renamed := renamedCopy(t, src, strings.Join(append(parts[:2], "99"), "."))
		fit, err = FitSource(renamed)
		if err != nil || fit.Series != v {
			t.Errorf("%s presented as %s: %+v %v", v, renamed.Version, fit, err)
		}
	}
	if ran == 0 {
		t.Skip("no NVIDIA source unpacked (scripts/kernel-deps.sh)")
	}
}

// renamedCopy copies the files a proof reads (Kbuild and those the series touches)
// with the version string replaced.
func renamedCopy(t *testing.T, src Source, to string) Source {
	t.Helper()
	s, _ := LookupSeries(src.Version)
	patches, err := s.Parse()
	if err != nil {
		t.Fatal(err)
	}
	files, err := src.ReadFiles(append(Touched(patches), "Kbuild"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for f, c := range files {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(c, src.Version, to)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "nvidia-uvm"), 0o755)
	out, err := InspectSource(dir)
	if err != nil || out.Version != to {
		t.Fatalf("renamed copy: %+v %v", out, err)
	}
	return out
}

// The proof reads a tarball source as it reads a folder: only the touched files, under
// the tarball's top folder.
func TestFitSourceTarball(t *testing.T) {
	files := preimage(t, "550.163.01")
	files["Kbuild"] = `ccflags-y += -DNV_VERSION_STRING=\"550.163.01\"` + "\n"
	p := filepath.Join(t.TempDir(), "src.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for name, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "./nvidia-open-550.163.01/" + name, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
	src, err := InspectSource(p)
	if err != nil || src.Kind != SourceTarball || src.Top != "nvidia-open-550.163.01" {
		t.Fatalf("InspectSource = %+v, %v", src, err)
	}
	fit, err := FitSource(src)
	if err != nil || fit.Series != "550.163.01" || len(fit.Hunks) != seriesHunks(t, "550.163.01") {
		t.Fatalf("fit = %+v, %v", fit, err)
	}
}

// seriesHunks counts the hunks of version v's carried series.
func seriesHunks(t *testing.T, v string) int {
	t.Helper()
	s, err := LookupSeries(v)
	if err != nil {
		t.Fatal(err)
	}
	patches, err := s.Parse()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range patches {
		for _, f := range p.Files {
			n += len(f.Hunks)
		}
	}
	return n
}
