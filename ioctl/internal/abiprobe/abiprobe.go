// Package abiprobe checks the Go mirrors of C ABI structs and constants
// against what a C probe compiled with the real headers prints: the check
// behind the ioctl packages' ABI tests (ours, RM's and stock UVM's).
package abiprobe

import (
	"bufio"
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Check reads the probe's output, one line each:
//
//	S <struct> <size>
//	F <struct> <field> <offset> <size>
//	C <constant> <value>
//
// and reports on t every difference with structs (the Go mirror of each C
// struct, fields matched by name without case) and consts: sizes, offsets,
// values, and anything one side has and the other lacks (Go fields named
// "_" are padding and need no C field). It returns the C size of each
// struct printed, for checks of the caller's own.
func Check(t testing.TB, out []byte, structs map[string]reflect.Type, consts map[string]uint64) map[string]uint64 {
	t.Helper()
	sizes := map[string]uint64{}
	seenField := map[string]map[string]bool{}
	seenConst := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		num := func(i int) uint64 {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				t.Fatalf("probe line %q: %v", sc.Text(), err)
			}
			return v
		}
		switch {
		case len(f) == 3 && f[0] == "S":
			typ, ok := structs[f[1]]
			if !ok {
				t.Errorf("C struct %s has no Go mirror", f[1])
				continue
			}
			sizes[f[1]] = num(2)
			if got := uint64(typ.Size()); got != num(2) {
				t.Errorf("%s: Go %s is %d bytes, C %d", f[1], typ.Name(), got, num(2))
			}
		case len(f) == 5 && f[0] == "F":
			typ, ok := structs[f[1]]
			if !ok {
				continue // reported on its S line
			}
			gf, found := fieldFold(typ, f[2])
			if !found {
				t.Errorf("%s.%s: Go %s has no field of that name", f[1], f[2], typ.Name())
				continue
			}
			if seenField[f[1]] == nil {
				seenField[f[1]] = map[string]bool{}
			}
			seenField[f[1]][gf.Name] = true
			if uint64(gf.Offset) != num(3) || uint64(gf.Type.Size()) != num(4) {
				t.Errorf("%s.%s: Go offset %d size %d, C offset %d size %d",
					f[1], f[2], gf.Offset, gf.Type.Size(), num(3), num(4))
			}
		case len(f) == 3 && f[0] == "C":
			v, ok := consts[f[1]]
			if !ok {
				t.Errorf("C constant %s has no Go mirror", f[1])
				continue
			}
			seenConst[f[1]] = true
			if v != num(2) {
				t.Errorf("%s: Go %#x, C %#x", f[1], v, num(2))
			}
		default:
			t.Fatalf("unexpected probe line %q", sc.Text())
		}
	}
	for name, typ := range structs {
		if _, ok := sizes[name]; !ok {
			t.Errorf("Go mirror of %s not printed by the probe", name)
			continue
		}
		for i := range typ.NumField() {
			if n := typ.Field(i).Name; n != "_" && !seenField[name][n] {
				t.Errorf("Go field %s.%s is not in the C struct (or not probed)", typ.Name(), n)
			}
		}
	}
	for name := range consts {
		if !seenConst[name] {
			t.Errorf("Go constant %s not printed by the probe", name)
		}
	}
	return sizes
}

// fieldFold finds t's field named name, ignoring case (C's fields are
// lowerCamel, Go's exported).
func fieldFold(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if strings.EqualFold(t.Field(i).Name, name) {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}
