package metadata

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Mounts maps a dockerd mount ID to how many times it is currently mounted.
// The same ID can be mounted more than once at a time (docker cp into a
// running container), so this is a count, not a set.
type Mounts map[string]int

// Total is the number of active mounts over all IDs.
func (m Mounts) Total() int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// Mounts returns the mount counts of volume name (empty if none).
func (db *DB) Mounts(ctx context.Context, name string) (Mounts, error) {
	var m Mounts
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		m, err = readMounts(tx.Bucket(bucketMounts).Bucket([]byte(name)))
		if err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
		return nil
	})
	return m, err
}

// AllMounts returns the mount counts of every volume that has any.
func (db *DB) AllMounts(ctx context.Context) (map[string]Mounts, error) {
	out := map[string]Mounts{}
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMounts).ForEachBucket(func(k []byte) error {
			m, err := readMounts(tx.Bucket(bucketMounts).Bucket(k))
			if err != nil {
				return fmt.Errorf("volume %q: %w", k, err)
			}
			if len(m) > 0 {
				out[string(k)] = m
			}
			return nil
		})
	})
	return out, err
}

// AddMount increments the count of mount ID id on volume name and returns
// the counts after the change; the new count is Recorded until its answer
// is confirmed (see Answer). The volume must have a record (ErrNotFound).
func (db *DB) AddMount(ctx context.Context, name, id string) (Mounts, error) {
	var m Mounts
	err := db.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketVolumes).Get([]byte(name)) == nil {
			return fmt.Errorf("volume %q: %w", name, ErrNotFound)
		}
		b, err := tx.Bucket(bucketMounts).CreateBucketIfNotExists([]byte(name))
		if err != nil {
			return err
		}
		c, err := readCount(b.Get([]byte(id)))
		if err != nil {
			return fmt.Errorf("volume %q mount ID %q: %w", name, id, err)
		}
		if err := b.Put([]byte(id), []byte(strconv.Itoa(c+1))); err != nil {
			return err
		}
		if err := addRecorded(tx, name, id); err != nil {
			return err
		}
		m, err = readMounts(b)
		return err
	})
	return m, err
}

// RemoveMount decrements the count of mount ID id on volume name and returns
// the counts after the change. found is false, and nothing changes, when the
// volume or the ID has no count: dockerd sends Unmount for IDs this host may
// have forgotten, and that is not an error.
func (db *DB) RemoveMount(ctx context.Context, name, id string) (m Mounts, found bool, err error) {
	err = db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMounts).Bucket([]byte(name))
		if b == nil {
			m = Mounts{}
			return nil
		}
		v := b.Get([]byte(id))
		if v != nil {
			found = true
			c, err := readCount(v)
			if err != nil {
				return fmt.Errorf("volume %q mount ID %q: %w", name, id, err)
			}
			if c <= 1 {
				err = b.Delete([]byte(id))
			} else {
				err = b.Put([]byte(id), []byte(strconv.Itoa(c-1)))
			}
			if err != nil {
				return err
			}
		}
		m, err = readMounts(b)
		if err != nil {
			return err
		}
		if len(m) == 0 {
			return deleteMounts(tx, name)
		}
		return clampAnswers(tx, name, m)
	})
	return m, found, err
}

// DeleteMounts forgets every mount count of volume name.
func (db *DB) DeleteMounts(ctx context.Context, name string) error {
	return db.update(ctx, func(tx *bolt.Tx) error { return deleteMounts(tx, name) })
}

func deleteMounts(tx *bolt.Tx, name string) error {
	if err := deleteAnswers(tx, name); err != nil {
		return err
	}
	err := tx.Bucket(bucketMounts).DeleteBucket([]byte(name))
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

func readMounts(b *bolt.Bucket) (Mounts, error) {
	m := Mounts{}
	if b == nil {
		return m, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		c, err := readCount(v)
		if err != nil {
			return fmt.Errorf("mount ID %q: %w", k, err)
		}
		m[string(k)] = c
		return nil
	})
	return m, err
}

func readCount(v []byte) (int, error) {
	if v == nil {
		return 0, nil
	}
	c, err := strconv.Atoi(string(v))
	if err != nil || c < 0 {
		return 0, fmt.Errorf("corrupt mount count %q", v)
	}
	return c, nil
}
