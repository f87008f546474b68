package trace

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// tracefsRoots are where tracefs is found, the first one mounted if none is.
var tracefsRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// Tracefs returns the tracefs mount point, mounting it at /sys/kernel/tracing
// when it is not mounted (it is not by default on the machines here).
func Tracefs() (string, error) {
	for _, r := range tracefsRoots {
		if _, err := os.Stat(filepath.Join(r, "events")); err == nil {
			return r, nil
		}
	}
	if err := unix.Mount("tracefs", tracefsRoots[0], "tracefs", 0, ""); err != nil {
		return "", fmt.Errorf("mount tracefs at %s: %w", tracefsRoots[0], err)
	}
	return tracefsRoots[0], nil
}

// Field is one field of a tracepoint record, as its format file lists it.
type Field struct {
	Name   string // without an array suffix
	Type   string // the C declaration without the name, e.g. "__u8[16]"
	Offset int
	Size   int
	Signed bool
}

// Format is a tracepoint's record layout, from
// <tracefs>/events/<system>/<event>/format.
type Format struct {
	System, Event string
	ID            uint32
	Fields        []Field
}

// Size is the length of a record: the end of its last field.
func (f *Format) Size() int {
	n := 0
	for _, fl := range f.Fields {
		n = max(n, fl.Offset+fl.Size)
	}
	return n
}

// Field returns the field called name.
func (f *Format) Field(name string) (Field, bool) {
	for _, fl := range f.Fields {
		if fl.Name == name {
			return fl, true
		}
	}
	return Field{}, false
}

// ReadFormat reads the format file of system:event under tracefs root.
func ReadFormat(root, system, event string) (*Format, error) {
	path := filepath.Join(root, "events", system, event, "format")
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tracepoint %s:%s: %w", system, event, ErrNotPresent)
		}
		return nil, fmt.Errorf("read tracepoint format: %w", err)
	}
	f, err := ParseFormat(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.System = system
	return f, nil
}

// ParseFormat parses the text of a tracefs format file.
func ParseFormat(text string) (*Format, error) {
	f := &Format{}
	haveID := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "name:"):
			f.Event = strings.TrimSpace(strings.TrimPrefix(line, "name:"))
		case strings.HasPrefix(line, "ID:"):
			id, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "ID:")), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parse format: bad ID line %q", line)
			}
			f.ID, haveID = uint32(id), true
		case strings.HasPrefix(line, "field:"):
			fl, err := parseField(line)
			if err != nil {
				return nil, err
			}
			f.Fields = append(f.Fields, fl)
		}
	}
	if !haveID || len(f.Fields) == 0 {
		return nil, errors.New("parse format: no ID or no fields")
	}
	return f, nil
}

// parseField parses
// "field:unsigned char gpu_uuid[16];	offset:8;	size:16;	signed:0;".
func parseField(line string) (Field, error) {
	var fl Field
	for _, part := range strings.Split(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "field":
			decl := strings.TrimSpace(v)
			i := strings.LastIndexAny(decl, " *")
			if i < 0 {
				return fl, fmt.Errorf("parse format: bad field %q", line)
			}
			fl.Name, fl.Type = decl[i+1:], strings.TrimSpace(decl[:i+1])
			if j := strings.IndexByte(fl.Name, '['); j >= 0 {
				fl.Type += fl.Name[j:]
				fl.Name = fl.Name[:j]
			}
		case "offset":
			fl.Offset, err = strconv.Atoi(v)
		case "size":
			fl.Size, err = strconv.Atoi(v)
		case "signed":
			fl.Signed = v == "1"
		}
		if err != nil {
			return fl, fmt.Errorf("parse format: bad %s in %q", k, line)
		}
	}
	if fl.Name == "" || fl.Size <= 0 || fl.Offset < 0 {
		return fl, fmt.Errorf("parse format: bad field %q", line)
	}
	return fl, nil
}

// Record is one raw tracepoint record with the layout that decodes it. Its
// common_* fields (the first 8 bytes) are not meaningful: the kernel
// overwrites them before BPF programs see the record.
type Record struct {
	Format *Format
	TGID   uint32
	TID    uint32
	Data   []byte
}

// ErrField is returned when a record lacks a field or it has another size.
var ErrField = errors.New("tracepoint field")

// Bytes returns the raw bytes of field name.
func (r Record) Bytes(name string) ([]byte, error) {
	fl, ok := r.Format.Field(name)
	if !ok {
		return nil, fmt.Errorf("%w %s: not in %s:%s", ErrField, name, r.Format.System, r.Format.Event)
	}
	if fl.Offset+fl.Size > len(r.Data) {
		return nil, fmt.Errorf("%w %s: record too short (%d bytes)", ErrField, name, len(r.Data))
	}
	return r.Data[fl.Offset : fl.Offset+fl.Size], nil
}

// Uint returns an unsigned integer field of 1, 2, 4 or 8 bytes (host order).
func (r Record) Uint(name string) (uint64, error) {
	b, err := r.Bytes(name)
	if err != nil {
		return 0, err
	}
	switch len(b) {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.NativeEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.NativeEndian.Uint32(b)), nil
	case 8:
		return binary.NativeEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("%w %s: size %d is not an integer's", ErrField, name, len(b))
}

// String returns a NUL-terminated char array field.
func (r Record) String(name string) (string, error) {
	b, err := r.Bytes(name)
	if err != nil {
		return "", err
	}
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b), nil
}
