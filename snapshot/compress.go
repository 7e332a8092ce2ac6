package snapshot

import (
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codec names how a chunk's stored bytes are compressed. Its value is the
// flags byte of a chunk reference (doc.go).
type Codec uint8

// Codecs. A store's config names the one new chunks use; every reader
// decodes all of them, so a store can change codec without a new version.
const (
	CodecNone Codec = 0 // stored raw
	CodecZstd Codec = 1 // zstd (klauspost/compress, SpeedFastest)
	CodecS2   Codec = 2 // S2 (klauspost/compress/s2, default level)
	maxCodec        = CodecS2
)

// defaultCodec is chosen by measurement (doc.go, "Compression").
const defaultCodec = CodecS2

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	case CodecS2:
		return "s2"
	}
	return fmt.Sprintf("codec%d", uint8(c))
}

func codecByName(s string) (Codec, bool) {
	switch s {
	case "zstd":
		return CodecZstd, true
	case "s2":
		return CodecS2, true
	}
	return 0, false
}

// compressor compresses chunks with one codec; one per goroutine.
type compressor struct {
	codec Codec
	zw    *zstd.Encoder
}

func newCompressor(c Codec) (*compressor, error) {
	cp := &compressor{codec: c}
	if c == CodecZstd {
		zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, err
		}
		cp.zw = zw
	}
	return cp, nil
}

// compress returns the stored form of data and its codec: compressed into
// dst when that saves at least 1/32, else data itself.
func (cp *compressor) compress(dst, data []byte) ([]byte, Codec) {
	var z []byte
	switch cp.codec {
	case CodecZstd:
		z = cp.zw.EncodeAll(data, dst[:0])
	case CodecS2:
		if cap(dst) < s2.MaxEncodedLen(len(data)) {
			dst = make([]byte, s2.MaxEncodedLen(len(data)))
		}
		z = s2.Encode(dst[:cap(dst)], data)
	default:
		return data, CodecNone
	}
	if len(z) < len(data)-len(data)/32 {
		return z, cp.codec
	}
	return data, CodecNone
}

func (cp *compressor) close() {
	if cp.zw != nil {
		cp.zw.Close()
	}
}

// decompressor decodes every codec; one per goroutine.
type decompressor struct {
	zr  *zstd.Decoder
	max int
}

func newDecompressor(maxRaw int) (*decompressor, error) {
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(uint64(2*maxRaw)), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	return &decompressor{zr: zr, max: maxRaw}, nil
}

// decode decompresses stored into dst (whose capacity bounds the output:
// at most raw bytes are ever produced).
func (d *decompressor) decode(c Codec, dst, stored []byte, raw int) ([]byte, error) {
	switch c {
	case CodecNone:
		return stored, nil
	case CodecZstd:
		out, err := d.zr.DecodeAll(stored, dst[:0:raw])
		if err != nil {
			return nil, fmt.Errorf("decompressing: %w", ErrCorrupt)
		}
		return out, nil
	case CodecS2:
		n, err := s2.DecodedLen(stored)
		if err != nil || n != raw {
			return nil, fmt.Errorf("decompressing: %d bytes instead of %d: %w", n, raw, ErrCorrupt)
		}
		out, err := s2.Decode(dst[:raw], stored)
		if err != nil {
			return nil, fmt.Errorf("decompressing: %w", ErrCorrupt)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown codec %d: %w", c, ErrCorrupt)
}

func (d *decompressor) close() { d.zr.Close() }
