package trace

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func readFixture(t *testing.T, name string) *Format {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFormat(string(b))
	if err != nil {
		t.Fatal(err)
	}
	f.System = "vattn"
	return f
}

func TestParseFormat(t *testing.T) {
	f := readFixture(t, "vattn_map.format")
	if f.Event != "vattn_map" || f.ID != 1234 || len(f.Fields) != 11 || f.Size() != 56 {
		t.Fatalf("format = %+v (size %d)", f, f.Size())
	}
	uuid, _ := f.Field("gpu_uuid")
	if uuid.Offset != 8 || uuid.Size != 16 || uuid.Type != "__u8[16]" {
		t.Errorf("gpu_uuid = %+v", uuid)
	}
	if pid, _ := f.Field("common_pid"); !pid.Signed || pid.Type != "int" {
		t.Errorf("common_pid = %+v", pid)
	}
	for _, bad := range []string{
		"",
		"name: x\nformat:\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n",  // no ID
		"name: x\nID: 7\nformat:\n",                                          // no fields
		"name: x\nID: x7\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n",   // bad ID
		"name: x\nID: 7\n\tfield:int a;\toffset:zero;\tsize:4;\tsigned:1;\n", // bad offset
		"name: x\nID: 7\n\tfield:int a;\toffset:0;\tsize:0;\tsigned:1;\n",    // no size
		"name: x\nID: 7\n\tfield:nameless;\toffset:0;\tsize:4;\tsigned:1;\n", // no type
	} {
		if _, err := ParseFormat(bad); err == nil {
			t.Errorf("ParseFormat(%q): no error", bad)
		}
	}
	if _, err := ReadFormat(t.TempDir(), "vattn", "vattn_map"); !errors.Is(err, ErrNotPresent) {
		t.Errorf("missing format file: err = %v, want ErrNotPresent", err)
	}
}

// vattnRecord lays out a vattn:* record by the fixture's offsets.
func vattnRecord(f *Format, uuid [16]byte, pageSize uint64, count, done, status uint32, d time.Duration) Record {
	data := make([]byte, f.Size())
	put := func(name string, v uint64) {
		fl, _ := f.Field(name)
		switch fl.Size {
		case 4:
			binary.NativeEndian.PutUint32(data[fl.Offset:], uint32(v))
		case 8:
			binary.NativeEndian.PutUint64(data[fl.Offset:], v)
		}
	}
	binary.NativeEndian.PutUint16(data, uint16(f.ID))
	fl, _ := f.Field("gpu_uuid")
	copy(data[fl.Offset:], uuid[:])
	put("page_size", pageSize)
	put("count", uint64(count))
	put("done", uint64(done))
	put("status", uint64(status))
	put("duration_ns", uint64(d))
	return Record{Format: f, TGID: 10, TID: 11, Data: data}
}

func TestDecodeVattnAndAggregate(t *testing.T) {
	f := readFixture(t, "vattn_map.format")
	uuid := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	const wantUUID = "GPU-deadbeef-0102-0304-0506-0708090a0b0c"
	ev, err := DecodeVattn(vattnRecord(f, uuid, 2<<20, 64, 60, 0x1f, 1500*time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	want := VattnEvent{Op: "map", GPU: wantUUID, PageSize: 2 << 20, Count: 64, Done: 60, Status: 0x1f, Duration: 1500 * time.Microsecond, TGID: 10, TID: 11}
	if ev != want {
		t.Errorf("decoded %+v, want %+v", ev, want)
	}

	s := &tracepointSource{unit: time.Microsecond, hists: map[histKey]*Hist{}, gpu: strings.ToLower(wantUUID)}
	for range 3 {
		s.handle(vattnRecord(f, uuid, 65536, 1, 1, 0, 3*time.Microsecond))
	}
	s.handle(vattnRecord(f, uuid, 65536, 1, 0, 0x1f, 100*time.Microsecond))
	other := uuid
	other[0] = 0
	s.handle(vattnRecord(f, other, 65536, 1, 1, 0, time.Microsecond)) // another GPU: filtered
	short := vattnRecord(f, uuid, 65536, 1, 1, 0, time.Microsecond)
	short.Data = short.Data[:40]
	s.handle(short) // cannot decode duration_ns
	hs, _ := s.collect(nil)
	if len(hs) != 1 {
		t.Fatalf("hists = %+v", hs)
	}
	h := hs[0]
	if h.Op != "map" || h.GPU != wantUUID || h.Count != 4 || h.Errors != 1 || h.Slots[1] != 3 || h.Slots[6] != 1 || h.SumNs != 109000 {
		t.Errorf("hist = %+v", h)
	}
	if s.undecoded != 1 {
		t.Errorf("undecoded = %d, want 1", s.undecoded)
	}

	// No valid GPU in the batch: an all-zero UUID, shown as no GPU.
	if ev, err := DecodeVattn(vattnRecord(f, [16]byte{}, 0, 1, 0, 0x26, time.Microsecond)); err != nil || ev.GPU != "" {
		t.Errorf("zero UUID decoded as %q, %v", ev.GPU, err)
	}

	// A record whose format lacks a field is an error, not a zero.
	bare := &Format{System: "vattn", Event: "vattn_unmap", ID: 1, Fields: f.Fields[:5]}
	if _, err := DecodeVattn(Record{Format: bare, Data: make([]byte, 56)}); !errors.Is(err, ErrField) {
		t.Errorf("missing field: err = %v", err)
	}
}

// renameThread sets the calling OS thread's name, which fires
// task:task_rename.
func renameThread(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile("/proc/thread-self/comm", []byte(name), 0); err != nil {
		t.Fatalf("rename thread: %v", err)
	}
}

// The attach-and-decode path of the tracepoint source, on a kernel tracepoint
// the test can fire at will: records arrive, are filtered by process and are
// decoded by the offsets of the event's format file.
func TestRecorderOnKernelTracepoint(t *testing.T) {
	needRoot(t)
	got := make(chan Record, 64)
	r, attached, err := openRecorder([]string{"task:task_rename", "vattn:no_such_event"}, os.Getpid(), func(rec Record) { got <- rec })
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if len(attached) != 1 || attached[0] != "task:task_rename" {
		t.Fatalf("attached = %v", attached)
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := os.ReadFile("/proc/thread-self/comm")
	if err != nil {
		t.Fatal(err)
	}
	defer renameThread(t, strings.TrimSpace(string(old)))
	// Another process's renames must not arrive (the PID filter).
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VATTN_TRACE_CHILD_RENAME=vattn-child")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	names := []string{"vattn-t0", "vattn-t1", "vattn-t2", "vattn-end"}
	for _, n := range names {
		renameThread(t, n)
	}
	tid := uint32(unix.Gettid())
	var seen []string
	timeout := time.After(30 * time.Second)
	for len(seen) == 0 || seen[len(seen)-1] != "vattn-end" {
		select {
		case rec := <-got:
			pid, err := rec.Uint("pid")
			if err != nil {
				t.Fatal(err)
			}
			newcomm, err := rec.String("newcomm")
			if err != nil {
				t.Fatal(err)
			}
			if rec.TGID != uint32(os.Getpid()) || uint32(pid) != tid || rec.TID != tid {
				t.Errorf("record from tgid %d tid %d (field pid %d), want %d/%d", rec.TGID, rec.TID, pid, os.Getpid(), tid)
			}
			seen = append(seen, newcomm)
		case <-timeout:
			t.Fatalf("records seen %v, never vattn-end", seen)
		}
	}
	// Go's runtime may rename nothing else, so the records are exactly ours.
	if strings.Join(seen, ",") != strings.Join(names, ",") {
		t.Errorf("records = %v, want %v", seen, names)
	}
	if n, err := r.lost(); err != nil || n != 0 {
		t.Errorf("lost = %d, %v", n, err)
	}
}

func TestTracepointSourceNotPresent(t *testing.T) {
	needRoot(t)
	_, err := Open(Options{Sources: []Source{SourceTracepoint}})
	if !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), "tracepoint: not attached: tracepoints vattn:vattn_map") || !strings.Contains(err.Error(), "not present") {
		t.Fatalf("err = %v", err)
	}
	_, err = Open(Options{Sources: []Source{SourceTracepoint}, Events: []string{"no-colon"}})
	if err == nil || !strings.Contains(err.Error(), "want system:event") {
		t.Fatalf("err = %v", err)
	}
}
