package snapshot

import (
	"encoding/binary"
	"fmt"
)

// enc appends the primitive encodings of doc.go ("Encoding") to a buffer.
type enc struct{ b []byte }

func (e *enc) u8(v byte)        { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) fixed(b []byte)   { e.b = append(e.b, b...) }
func (e *enc) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.b = append(e.b, b...) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) uvarints(v ...uint64) {
	for _, x := range v {
		e.uvarint(x)
	}
}

// dec reads what enc wrote. It never panics and never allocates more than
// a small multiple of its input: the first problem is kept in err, and
// every later read returns zero values.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format+": %w", append(args, ErrCorrupt)...)
	}
	d.b = nil
}

func (d *dec) u8() byte {
	if len(d.b) < 1 {
		d.fail("unexpected end")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// upTo reads a uvarint and checks it is at most max.
func (d *dec) upTo(max uint64, what string) uint64 {
	v := d.uvarint()
	if v > max {
		d.fail("%s %d exceeds %d", what, v, max)
		return 0
	}
	return v
}

func (d *dec) fixed(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail("unexpected end")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most max bytes. The
// result aliases the input.
func (d *dec) bytes(max int, what string) []byte {
	n := d.upTo(uint64(max), what+" length")
	return d.fixed(int(n))
}

func (d *dec) str(max int, what string) string { return string(d.bytes(max, what)) }

// count reads an element count, checks it against max and against the
// bytes left (each element takes at least minSize bytes), so a lying
// count cannot make the caller allocate.
func (d *dec) count(max uint64, minSize int, what string) int {
	n := d.upTo(max, what)
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("%s %d does not fit in %d bytes", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *dec) done(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes after %s", len(d.b), what)
	}
	return d.err
}
