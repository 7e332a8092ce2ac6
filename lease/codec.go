package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// MaxRecordSize bounds a head record; anything larger is rejected unread.
const MaxRecordSize = 4096

// recordKeys lists every key of a version-1 record and whether it is required.
var recordKeys = map[string]bool{
	"version": true, "volume": true, "state": true, "owner": true, "generation": true,
	"head": false, "head_generation": false, "seq": true, "nonce": true, "ttl_ms": true, "renewed": true,
	"takeover": false,
}

var takeoverKeys = map[string]bool{"from": true, "generation": true, "forced": true, "unchanged_ms": true}

// Encode returns the stored form of r after checking it.
func Encode(r Record) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("encode head record: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode head record: %w", err)
	}
	return append(b, '\n'), nil
}

// Decode parses a stored head record strictly: the exact key set of its
// version (no unknown, duplicate or differently cased keys), no trailing
// data, and every invariant of validate. A record of another version fails
// with an error matching ErrVersion, anything else malformed with ErrCorrupt.
func Decode(data []byte) (Record, error) {
	if len(data) > MaxRecordSize {
		return Record{}, fmt.Errorf("%w: %d bytes, limit %d", ErrCorrupt, len(data), MaxRecordSize)
	}
	var probe struct {
		Version *json.Number `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if probe.Version == nil {
		return Record{}, fmt.Errorf("%w: no version field", ErrCorrupt)
	}
	if v, err := probe.Version.Int64(); err != nil || v < RecordVersion {
		return Record{}, fmt.Errorf("%w: bad version %s", ErrCorrupt, probe.Version.String())
	} else if v > RecordVersion {
		return Record{}, fmt.Errorf("%w: head record version %d, this portvol reads version %d only: upgrade portvol on this host", ErrVersion, v, RecordVersion)
	}
	if err := checkKeys(data); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Record{}, fmt.Errorf("%w: data after the record", ErrCorrupt)
	}
	if err := r.validate(); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return r, nil
}

// checkKeys walks the top-level object (and the takeover object) and
// rejects keys that encoding/json would accept loosely: other spellings,
// duplicates, and missing required keys.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	return walkObject(dec, recordKeys, "takeover")
}

func walkObject(dec *json.Decoder, keys map[string]bool, nested string) error {
	if t, err := dec.Token(); err != nil {
		return err
	} else if t != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	seen := make(map[string]bool)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		if _, ok := keys[k]; !ok {
			return fmt.Errorf("unknown key %q", k)
		}
		if seen[k] {
			return fmt.Errorf("duplicate key %q", k)
		}
		seen[k] = true
		if k == nested {
			if err := walkNested(dec); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	var missing []string
	for k, required := range keys {
		if required && !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("missing keys %q", missing)
	}
	return nil
}

// walkNested checks the takeover value: null or an object of takeoverKeys.
func walkNested(dec *json.Decoder) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	return walkObject(json.NewDecoder(bytes.NewReader(raw)), takeoverKeys, "")
}
