package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/portvol/portvol/internal/volname"
	"github.com/portvol/portvol/transfer"
)

// TrashPrefix is where removed volumes wait out their grace period:
// trash/<name>/<id>/<original key> for the objects moved there, and
// trash/<name>/<id>/copies/<original key> for copies of objects that stayed
// in place (the head record), where <id> is the removal time in Unix
// nanoseconds as 19 decimal digits, so a volume's entries sort by time.
const TrashPrefix = "trash/"

// TrashEntry is one removed volume in the trash.
type TrashEntry struct {
	Name    string
	ID      string
	Removed time.Time
}

var trashIDRE = regexp.MustCompile(`^[0-9]{19}$`)

// TrashID returns the trash entry ID of a removal at t.
func TrashID(t time.Time) string { return fmt.Sprintf("%019d", t.UnixNano()) }

func trashDir(name, id string) string { return TrashPrefix + name + "/" + id + "/" }

// TrashKey returns where trash entry id of volume name keeps key.
func TrashKey(name, id, key string) string { return trashDir(name, id) + key }

// copiesDir holds, inside an entry, the copies of objects that stayed.
const copiesDir = "copies/"

// TrashCopyKey returns where trash entry id of volume name keeps its copy
// of key (see MoveToTrash's copies).
func TrashCopyKey(name, id, key string) string { return trashDir(name, id) + copiesDir + key }

// smallObject: objects up to this size are copied through memory, so the
// retrying store can repeat a failed upload.
const smallObject = 64 << 20

// MoveToTrash moves volume name's objects into trash entry id. Each object
// whose key is in keys — or starts with it, for entries ending in "/" — is
// copied into the entry and then deleted; each key in copies is copied and
// kept (under TrashCopyKey; RestoreFromTrash does not put copies back).
// Missing objects are skipped, so calling MoveToTrash again after an
// interruption finishes the move; once nothing is left to move it does
// nothing, not even the copies. Keys are moved in the order given: put
// the volume record first, so the volume stops being listed at once.
func MoveToTrash(ctx context.Context, store transfer.ObjectStore, name, id string, keys, copies []string) error {
	if err := checkEntry(name, id); err != nil {
		return err
	}
	var objs []string
	for _, k := range keys {
		if !strings.HasSuffix(k, "/") {
			objs = append(objs, k)
			continue
		}
		more, err := listKeys(ctx, store, k)
		if err != nil {
			return fmt.Errorf("volume %q: move to the trash: %w", name, err)
		}
		objs = append(objs, more...)
	}
	var present []string
	for _, key := range objs {
		if _, err := store.Stat(ctx, key); err == nil {
			present = append(present, key)
		} else if !errors.Is(err, transfer.ErrNotExist) {
			return fmt.Errorf("volume %q: move to the trash: %w", name, err)
		}
	}
	if len(present) == 0 {
		return nil // moved already (the entry may have been purged since)
	}
	for _, key := range copies {
		if _, err := copyObject(ctx, store, key, TrashCopyKey(name, id, key)); err != nil {
			return fmt.Errorf("volume %q: move to the trash: %w", name, err)
		}
	}
	for _, key := range present {
		copied, err := copyObject(ctx, store, key, TrashKey(name, id, key))
		if err == nil && copied {
			err = store.Delete(ctx, key)
		}
		if err != nil {
			return fmt.Errorf("volume %q: move to the trash: %w", name, err)
		}
	}
	return nil
}

// Trash lists the trash entries of volume name, or of every volume if name
// is "", oldest first.
func Trash(ctx context.Context, store transfer.ObjectStore, name string) ([]TrashEntry, error) {
	prefix := TrashPrefix
	if name != "" {
		if err := volname.Check(name); err != nil {
			return nil, err
		}
		prefix += name + "/"
	}
	seen := map[string]bool{}
	var out []TrashEntry
	err := store.List(ctx, prefix, func(o transfer.ObjectInfo) error {
		parts := strings.SplitN(strings.TrimPrefix(o.Key, TrashPrefix), "/", 3)
		if len(parts) < 3 || checkEntry(parts[0], parts[1]) != nil || seen[parts[0]+"/"+parts[1]] {
			return nil
		}
		seen[parts[0]+"/"+parts[1]] = true
		ns, _ := strconv.ParseInt(parts[1], 10, 64)
		out = append(out, TrashEntry{Name: parts[0], ID: parts[1], Removed: time.Unix(0, ns).UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the trash: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// RestoreFromTrash copies every object of trash entry id back to its key —
// the volume record last, with create-if-absent — and then deletes the
// entry. It fails if volume name has a record again that is not the one in
// the entry (the name was created anew). Calling it again after an
// interruption finishes the restore.
func RestoreFromTrash(ctx context.Context, store transfer.ObjectStore, name, id string) error {
	if err := checkEntry(name, id); err != nil {
		return err
	}
	dir := trashDir(name, id)
	keys, err := listKeys(ctx, store, dir)
	if err != nil {
		return fmt.Errorf("volume %q: undelete: %w", name, err)
	}
	record := Key(name)
	for _, k := range keys {
		orig := strings.TrimPrefix(k, dir)
		if orig == record || !strings.HasPrefix(k, dir) || strings.HasPrefix(orig, copiesDir) {
			continue
		}
		if _, err := copyObject(ctx, store, k, orig); err != nil {
			return fmt.Errorf("volume %q: undelete: %w", name, err)
		}
	}
	data, _, err := store.Load(ctx, dir+record, maxRecord)
	switch {
	case errors.Is(err, transfer.ErrNotExist):
		// Restored by an earlier, interrupted call (it deletes the record last)?
		if _, gerr := Get(ctx, store, name); gerr != nil {
			return fmt.Errorf("volume %q: trash entry %s has no volume record: %w", name, id, ErrNotFound)
		}
	case err != nil:
		return fmt.Errorf("volume %q: undelete: %w", name, err)
	default:
		if _, err := store.PutIfAbsent(ctx, record, data); errors.Is(err, transfer.ErrPrecondition) {
			have, _, lerr := store.Load(ctx, record, maxRecord)
			if lerr != nil || !bytes.Equal(have, data) {
				return fmt.Errorf("volume %q exists again (created after it was removed): remove it first to undelete the old one", name)
			}
		} else if err != nil {
			return fmt.Errorf("volume %q: undelete: %w", name, err)
		}
	}
	for _, k := range keys {
		if k != dir+record {
			if err := store.Delete(ctx, k); err != nil {
				return fmt.Errorf("volume %q: undelete: clearing trash entry %s: %w", name, id, err)
			}
		}
	}
	if err := store.Delete(ctx, dir+record); err != nil {
		return fmt.Errorf("volume %q: undelete: clearing trash entry %s: %w", name, id, err)
	}
	return nil
}

// PurgeTrash deletes the trash entries of volumes removed before cutoff
// and returns them. Packs the volume used stay in the store (shared
// between volumes) until a prune finds no manifest that needs them.
func PurgeTrash(ctx context.Context, store transfer.ObjectStore, cutoff time.Time) ([]TrashEntry, error) {
	entries, err := Trash(ctx, store, "")
	if err != nil {
		return nil, err
	}
	var purged []TrashEntry
	for _, e := range entries {
		if !e.Removed.Before(cutoff) {
			continue
		}
		keys, err := listKeys(ctx, store, trashDir(e.Name, e.ID))
		if err != nil {
			return purged, err
		}
		for _, k := range keys {
			if err := store.Delete(ctx, k); err != nil {
				return purged, fmt.Errorf("purge trash entry %s of volume %q: %w", e.ID, e.Name, err)
			}
		}
		purged = append(purged, e)
	}
	return purged, nil
}

func checkEntry(name, id string) error {
	if err := volname.Check(name); err != nil {
		return err
	}
	if !trashIDRE.MatchString(id) {
		return fmt.Errorf("invalid trash entry id %q: want 19 digits", id)
	}
	return nil
}

func listKeys(ctx context.Context, store transfer.ObjectStore, prefix string) ([]string, error) {
	var keys []string
	err := store.List(ctx, prefix, func(o transfer.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	return keys, err
}

// copyObject copies src to dst; copied is false if src does not exist.
func copyObject(ctx context.Context, store transfer.ObjectStore, src, dst string) (copied bool, err error) {
	info, err := store.Stat(ctx, src)
	if errors.Is(err, transfer.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rc, err := store.Get(ctx, src, 0, -1)
	if errors.Is(err, transfer.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if info.Size <= smallObject {
		data, err := io.ReadAll(io.LimitReader(rc, info.Size+1))
		if err != nil {
			return false, fmt.Errorf("read %s: %w", src, err)
		}
		if int64(len(data)) != info.Size {
			return false, fmt.Errorf("read %s: got %d bytes, expected %d", src, len(data), info.Size)
		}
		r = bytes.NewReader(data)
	}
	if err := store.Put(ctx, dst, r, info.Size); err != nil {
		return false, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return true, nil
}

// ParseTrashKey splits a key inside a trash entry into the entry's volume
// name and ID and the original key of the object it holds. ok is false for
// keys outside an entry and for copies (TrashCopyKey), which are not put back.
func ParseTrashKey(key string) (name, id, original string, ok bool) {
	rest, found := strings.CutPrefix(key, TrashPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 || checkEntry(parts[0], parts[1]) != nil || strings.HasPrefix(parts[2], copiesDir) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
