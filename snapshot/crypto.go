package snapshot

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// KeySize is the size of an encryption key.
const KeySize = 32

// BLAKE3 derive-key contexts; each key has one purpose (doc.go).
const (
	ctxChunkID  = "portvol 2026-08 snapshot chunk id"
	ctxData     = "portvol 2026-08 snapshot data encryption"
	ctxKeyCheck = "portvol 2026-08 snapshot key check"
)

const (
	nonceSize    = 12
	tagSize      = 16
	sealOverhead = nonceSize + tagSize // encrypted
	sumSize      = 32                  // checksum trailer when not encrypted
)

// ParseKey turns the contents of a key file into a key: 32 raw bytes, or 64
// hex digits, or standard base64 of 32 bytes, with surrounding white space
// ignored for the text forms. The result is never logged or echoed in
// errors.
func ParseKey(data []byte) ([]byte, error) {
	if len(data) == KeySize {
		return bytes.Clone(data), nil
	}
	text := bytes.TrimSpace(data)
	if len(text) == 2*KeySize {
		k := make([]byte, KeySize)
		if _, err := hex.Decode(k, text); err == nil {
			return k, nil
		}
	}
	if k, err := base64.StdEncoding.DecodeString(string(text)); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, ErrBadKey
}

// cryptor holds what the store's encryption setting implies: a keyed hash
// for chunk IDs and an AEAD, or neither.
type cryptor struct {
	idKey []byte      // nil: chunk IDs are plain BLAKE3
	aead  cipher.AEAD // nil: not encrypted
}

// deriveKeys derives the per-purpose keys from the master key and the
// store ID, so the same master key gives unrelated keys in two stores.
func deriveKeys(master []byte, storeID []byte) (idKey, dataKey, check []byte) {
	material := append(bytes.Clone(master), storeID...)
	idKey, dataKey, check = make([]byte, 32), make([]byte, 32), make([]byte, 32)
	blake3.DeriveKey(ctxChunkID, material, idKey)
	blake3.DeriveKey(ctxData, material, dataKey)
	blake3.DeriveKey(ctxKeyCheck, material, check)
	clear(material)
	return idKey, dataKey, check
}

func newCryptor(master []byte, storeID []byte, wantCheck []byte) (*cryptor, error) {
	if master == nil {
		return &cryptor{}, nil
	}
	if len(master) != KeySize {
		return nil, ErrBadKey
	}
	idKey, dataKey, check := deriveKeys(master, storeID)
	if wantCheck != nil && subtle.ConstantTimeCompare(check, wantCheck) != 1 {
		return nil, ErrWrongKey
	}
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &cryptor{idKey: idKey, aead: aead}, nil
}

func (c *cryptor) encrypted() bool { return c.aead != nil }

// newHasher returns a hasher for chunk IDs; one per goroutine.
func (c *cryptor) newHasher() *blake3.Hasher {
	if c.idKey == nil {
		return blake3.New()
	}
	h, err := blake3.NewKeyed(c.idKey)
	if err != nil {
		panic(err) // key length is fixed
	}
	return h
}

func sumID(h *blake3.Hasher, data []byte) ID {
	h.Reset()
	h.Write(data)
	var id ID
	h.Sum(id[:0])
	return id
}

// seal appends the sealed form of plaintext to dst: nonce ‖ AES-GCM
// ciphertext ‖ tag when encrypted, else plaintext ‖ BLAKE3(ad, plaintext).
// ad binds the sealed bytes to their place (object key, chunk ID).
func (c *cryptor) seal(dst, plaintext, ad []byte) []byte {
	if c.aead == nil {
		dst = append(dst, plaintext...)
		sum := checksum(ad, plaintext)
		return append(dst, sum[:]...)
	}
	n := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	if _, err := rand.Read(dst[n : n+nonceSize]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return c.aead.Seal(dst, dst[n:n+nonceSize], plaintext, ad)
}

// open reverses seal, appending the plaintext to dst.
func (c *cryptor) open(dst, sealed, ad []byte) ([]byte, error) {
	if c.aead == nil {
		if len(sealed) < sumSize {
			return nil, fmt.Errorf("%d bytes is too short: %w", len(sealed), ErrCorrupt)
		}
		body := sealed[:len(sealed)-sumSize]
		sum := checksum(ad, body)
		if subtle.ConstantTimeCompare(sum[:], sealed[len(body):]) != 1 {
			return nil, fmt.Errorf("checksum mismatch: %w", ErrCorrupt)
		}
		return append(dst, body...), nil
	}
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("%d bytes is too short: %w", len(sealed), ErrCorrupt)
	}
	out, err := c.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("authentication failed: %w", ErrCorrupt)
	}
	return out, nil
}

func checksum(ad, body []byte) [32]byte {
	h := blake3.New()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(ad)))
	h.Write(n[:])
	h.Write(ad)
	h.Write(body)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// Chunk records in packs: encrypted stores seal them (ad = chunk ID); plain
// stores keep the stored bytes as they are, since the chunk ID is already a
// hash of the plaintext.
//
// id is the chunk ID's bytes: a slice, so that callers that seal or open
// many chunks pass a buffer of their own instead of making every ID
// escape to the heap (the AEAD takes it through an interface).
func (c *cryptor) sealChunk(dst, stored []byte, id []byte) []byte {
	if c.aead == nil {
		return append(dst, stored...)
	}
	return c.seal(dst, stored, id)
}

// openChunk returns the stored bytes of a record; for plain stores that is
// record itself, otherwise they are decrypted into dst.
func (c *cryptor) openChunk(dst, record []byte, id []byte) ([]byte, error) {
	if c.aead == nil {
		return record, nil
	}
	return c.open(dst, record, id)
}

func (c *cryptor) chunkOverhead() int {
	if c.aead == nil {
		return 0
	}
	return sealOverhead
}
