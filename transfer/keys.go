package transfer

import (
	"fmt"
	"strings"
)

// MaxKeyLen is the longest key any store accepts, in bytes. S3 allows 1024;
// a store prefix must still fit in front of it.
const MaxKeyLen = 768

// CheckKey reports whether key follows the key rules of ObjectStore:
// slash-separated segments of [A-Za-z0-9._-], none empty, "." or "..", no
// leading or trailing slash, at most MaxKeyLen bytes. The error wraps
// ErrPermanent, since repeating the call cannot fix the key.
func CheckKey(key string) error {
	if err := checkPath(key); err != nil {
		return fmt.Errorf("invalid object key %q: %s: %w", key, err, ErrPermanent)
	}
	return nil
}

// CheckPrefix is CheckKey for List prefixes: the empty prefix is allowed,
// and a prefix may end with a slash or in the middle of a segment.
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := checkPathChars(prefix); err != nil {
		return fmt.Errorf("invalid list prefix %q: %s: %w", prefix, err, ErrPermanent)
	}
	segs := strings.Split(prefix, "/")
	// Every segment but the last is whole and must be valid; the last may
	// be empty or partial ("." matches ".x").
	for _, s := range segs[:len(segs)-1] {
		if s == "" || s == "." || s == ".." {
			return fmt.Errorf("invalid list prefix %q: empty, \".\" or \"..\" segment: %w", prefix, ErrPermanent)
		}
	}
	return nil
}

func checkPath(key string) error {
	if key == "" {
		return fmt.Errorf("empty key")
	}
	if err := checkPathChars(key); err != nil {
		return err
	}
	for _, s := range strings.Split(key, "/") {
		switch s {
		case "":
			return fmt.Errorf("empty segment (leading, trailing or double slash)")
		case ".", "..":
			return fmt.Errorf("segment %q is not allowed", s)
		}
	}
	return nil
}

func checkPathChars(p string) error {
	if len(p) > MaxKeyLen {
		return fmt.Errorf("longer than %d bytes", MaxKeyLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-', c == '/':
		default:
			return fmt.Errorf("character %q at byte %d is not one of [A-Za-z0-9._-/]", c, i)
		}
	}
	return nil
}
