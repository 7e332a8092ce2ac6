package localcopy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MinSizeLimit is the smallest size limit accepted: below it a btrfs
// subvolume cannot hold its own metadata and the first write fails.
const MinSizeLimit = 1 << 20

// ParseSize reads a size as Docker users write it: a number (decimals
// allowed), optional blanks, and an optional unit — k, m, g, t or p, each
// optionally followed by i and/or b, any case; a bare b means bytes. Every
// unit is binary (20G = 20GB = 20GiB = 20×2^30), as in Docker's own size
// options.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	i := strings.IndexFunc(in, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(in)
	}
	num, unit := in[:i], strings.ToLower(strings.TrimLeft(in[i:], " "))
	if num == "" || num == "." {
		return 0, fmt.Errorf("size %q: %w: write a number with an optional unit, such as 20G, 512M or 1.5T", s, ErrInvalid)
	}
	shift, ok := uint(0), true
	if unit != "" && unit != "b" {
		letter, rest := unit[0], unit[1:]
		shift = map[byte]uint{'k': 10, 'm': 20, 'g': 30, 't': 40, 'p': 50}[letter]
		ok = shift > 0 && (rest == "" || rest == "b" || rest == "i" || rest == "ib")
	}
	if !ok {
		return 0, fmt.Errorf("size %q: %w: unknown unit %q (use k, m, g, t or p, optionally followed by b or ib)", s, ErrInvalid, unit)
	}
	if !strings.Contains(num, ".") {
		u, err := strconv.ParseUint(num, 10, 64)
		if err != nil || u > math.MaxInt64>>shift {
			return 0, fmt.Errorf("size %q: %w: too large", s, ErrInvalid)
		}
		return int64(u << shift), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w: %q is not a number", s, ErrInvalid, num)
	}
	n := f * float64(uint64(1)<<shift)
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: %w: too large", s, ErrInvalid)
	}
	return int64(n), nil
}

// ParseSizeLimit is ParseSize for a volume's size limit: at least
// MinSizeLimit.
func ParseSizeLimit(s string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n < MinSizeLimit {
		return 0, fmt.Errorf("size %q: %w: a volume needs at least 1M", s, ErrInvalid)
	}
	return n, nil
}

// FormatSize writes n the way ParseSize reads it, exactly: the largest
// binary unit that divides n (20G, 1536M, 1048577).
func FormatSize(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{50, "P"}, {40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
