package localcopy

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	const (
		k = int64(1) << 10
		m = int64(1) << 20
		g = int64(1) << 30
		T = int64(1) << 40
	)
	good := []struct {
		in   string
		want int64
	}{
		{"20G", 20 * g}, {"20GB", 20 * g}, {"20GiB", 20 * g}, {"20gib", 20 * g}, {"20g", 20 * g}, {"20Gi", 20 * g},
		{"512m", 512 * m}, {"512M", 512 * m}, {"512MB", 512 * m}, {"512 MiB", 512 * m},
		{"100k", 100 * k}, {"100KB", 100 * k}, {"1T", T}, {"1.5T", T + T/2}, {"0.5g", g / 2},
		{"1p", 1 << 50}, {"1048576", m}, {"1048576b", m}, {"1048576B", m}, {" 20G ", 20 * g},
		{"8388607T", 8388607 * T},
	}
	for _, c := range good {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []string{"", "G", "20X", "20GG", "-1G", "1e9", "20 G B", "ib", "20ib", "20i", "..", ".", "1.2.3G", "8388608T", "99999999999999999999", "1.0e3k", "20bytes"}
	for _, in := range bad {
		if got, err := ParseSize(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSize(%q) = %d, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestParseSizeLimit(t *testing.T) {
	if _, err := ParseSizeLimit("512k"); !errors.Is(err, ErrInvalid) {
		t.Errorf("512k accepted as a volume size limit: %v", err)
	}
	if n, err := ParseSizeLimit("1M"); err != nil || n != 1<<20 {
		t.Errorf("1M: %d, %v", n, err)
	}
}

func TestFormatSizeRoundTrip(t *testing.T) {
	for _, n := range []int64{1 << 20, 20 << 30, 1536 << 20, 1<<20 + 1, 3 << 40, 1 << 50} {
		s := FormatSize(n)
		back, err := ParseSize(s)
		if err != nil || back != n {
			t.Errorf("FormatSize(%d) = %q, parsed back as %d, %v", n, s, back, err)
		}
	}
	if s := FormatSize(20 << 30); s != "20G" {
		t.Errorf("FormatSize(20G) = %q", s)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"20G", "1.5T", "512 MiB", "1048576", "9223372036854775807", ".5k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSize(%q): error %v is not ErrInvalid", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, n)
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	})
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"v", "pg-data_1.x", "a..b"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".restore-x", "a/b", "../x", "a\x00b", string(make([]byte, 129))} {
		if err := CheckName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
