package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Whether dockerd got the answer to a Mount. A count is recorded before
// the answer is written, and dockerd never unmounts an ID whose Mount it
// saw fail; so for every count still waiting for its answer this package
// keeps where the answer stood (bucket mount_answers, beside mounts):
//
//	Recorded   the count is recorded; no byte of the answer has been
//	           written yet (MarkAnswering comes first, durably)
//	Answering  the answer is being written: dockerd may or may not have it
//	Unconfirmed an Answering left by a process that stopped before it
//	           learnt the outcome (set by SettleAnswers at start)
//
// A count that has none of these was answered (ConfirmMount). Older
// portvols ignore the bucket: their counts all read as answered, which is
// what they assumed anyway.

var (
	bucketAnswers = []byte("mount_answers")
	keyBootID     = []byte("boot_id")
)

// Answer is where the answers of one mount ID's counts stand.
type Answer struct {
	Recorded    int `json:"recorded,omitempty"`
	Answering   int `json:"answering,omitempty"`
	Unconfirmed int `json:"unconfirmed,omitempty"`
}

func (a Answer) total() int { return a.Recorded + a.Answering + a.Unconfirmed }

// Answers maps a mount ID to its counts whose answer is not known delivered.
type Answers map[string]Answer

// Unconfirmed is the number of counts of every ID left Unconfirmed.
func (as Answers) Unconfirmed() int {
	n := 0
	for _, a := range as {
		n += a.Unconfirmed
	}
	return n
}

// Answers returns the unanswered counts of volume name.
func (db *DB) Answers(ctx context.Context, name string) (Answers, error) {
	out := Answers{}
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = readAnswers(tx, name)
		return err
	})
	return out, err
}

// MarkAnswering records that the answer to a Mount of id on name is about
// to be written (one Recorded count becomes Answering). Call it, and wait
// for it, before the first byte of the answer.
func (db *DB) MarkAnswering(ctx context.Context, name, id string) error {
	return db.changeAnswer(ctx, name, id, func(a *Answer) error {
		if a.Recorded == 0 {
			return fmt.Errorf("volume %q mount ID %q: no recorded mount to answer", name, id)
		}
		a.Recorded--
		a.Answering++
		return nil
	})
}

// ConfirmMount records that dockerd has the answer to a Mount of id on
// name: the count is an ordinary one from now on. It also takes back a
// Recorded count (a caller in this process that writes no answer).
func (db *DB) ConfirmMount(ctx context.Context, name, id string) error {
	return db.changeAnswer(ctx, name, id, func(a *Answer) error {
		switch {
		case a.Answering > 0:
			a.Answering--
		case a.Recorded > 0:
			a.Recorded--
		}
		return nil
	})
}

// SettleAnswers runs once at start, before any Mount, on what a previous
// process left: counts still Recorded were never answered (no byte of the
// answer was written), so dockerd saw the Mount fail and will never
// unmount them — they are dropped; counts left Answering may have reached
// dockerd — they stay, Unconfirmed. It returns the mount IDs dropped, per
// volume.
func (db *DB) SettleAnswers(ctx context.Context) (map[string][]string, error) {
	dropped := map[string][]string{}
	err := db.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketAnswers)
		if root == nil {
			return nil
		}
		var names []string
		if err := root.ForEachBucket(func(k []byte) error { names = append(names, string(k)); return nil }); err != nil {
			return err
		}
		for _, name := range names {
			as, err := readAnswers(tx, name)
			if err != nil {
				return err
			}
			mb := tx.Bucket(bucketMounts).Bucket([]byte(name))
			for id, a := range as {
				for range a.Recorded {
					if mb == nil {
						break
					}
					c, err := readCount(mb.Get([]byte(id)))
					if err != nil {
						return fmt.Errorf("volume %q mount ID %q: %w", name, id, err)
					}
					if c <= 1 {
						err = mb.Delete([]byte(id))
					} else {
						err = mb.Put([]byte(id), []byte(fmt.Sprint(c-1)))
					}
					if err != nil {
						return err
					}
					dropped[name] = append(dropped[name], id)
				}
				as[id] = Answer{Unconfirmed: a.Unconfirmed + a.Answering}
			}
			if mb != nil {
				if m, err := readMounts(mb); err != nil {
					return err
				} else if len(m) == 0 {
					if err := deleteMounts(tx, name); err != nil {
						return err
					}
					continue
				}
			}
			if err := writeAnswers(tx, name, as); err != nil {
				return err
			}
		}
		return nil
	})
	return dropped, err
}

// DropUnconfirmed forgets the Unconfirmed counts of volume name (and
// their mount counts), and returns the counts left.
func (db *DB) DropUnconfirmed(ctx context.Context, name string) (Mounts, error) {
	var m Mounts
	err := db.update(ctx, func(tx *bolt.Tx) error {
		as, err := readAnswers(tx, name)
		if err != nil {
			return err
		}
		mb := tx.Bucket(bucketMounts).Bucket([]byte(name))
		for id, a := range as {
			if a.Unconfirmed == 0 || mb == nil {
				continue
			}
			c, err := readCount(mb.Get([]byte(id)))
			if err != nil {
				return fmt.Errorf("volume %q mount ID %q: %w", name, id, err)
			}
			if c <= a.Unconfirmed {
				err = mb.Delete([]byte(id))
			} else {
				err = mb.Put([]byte(id), []byte(fmt.Sprint(c-a.Unconfirmed)))
			}
			if err != nil {
				return err
			}
			a.Unconfirmed = 0
			as[id] = a
		}
		if err := writeAnswers(tx, name, as); err != nil {
			return err
		}
		m, err = readMounts(mb)
		if err == nil && len(m) == 0 {
			err = deleteMounts(tx, name)
		}
		return err
	})
	return m, err
}

// BootID returns the boot id stored by SetBootID ("" if none).
func (db *DB) BootID(ctx context.Context) (string, error) {
	var id string
	err := db.view(ctx, func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketMeta).Get(keyBootID))
		return nil
	})
	return id, err
}

// SetBootID stores the boot id the mount counts belong to.
func (db *DB) SetBootID(ctx context.Context, id string) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyBootID, []byte(id))
	})
}

// DropAllMounts forgets every mount count (and answer) of every volume and
// returns the volumes that had any.
func (db *DB) DropAllMounts(ctx context.Context) ([]string, error) {
	var names []string
	err := db.update(ctx, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMounts).ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		}); err != nil {
			return err
		}
		for _, n := range names {
			if err := deleteMounts(tx, n); err != nil {
				return err
			}
		}
		return nil
	})
	return names, err
}

// changeAnswer applies fn to the answer of id on name.
func (db *DB) changeAnswer(ctx context.Context, name, id string, fn func(*Answer) error) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		as, err := readAnswers(tx, name)
		if err != nil {
			return err
		}
		a := as[id]
		if err := fn(&a); err != nil {
			return err
		}
		as[id] = a
		return writeAnswers(tx, name, as)
	})
}

// addRecorded notes a new count of id on name as Recorded (in AddMount's
// transaction).
func addRecorded(tx *bolt.Tx, name, id string) error {
	as, err := readAnswers(tx, name)
	if err != nil {
		return err
	}
	a := as[id]
	a.Recorded++
	as[id] = a
	return writeAnswers(tx, name, as)
}

// clampAnswers keeps the answers of name within its counts after counts
// went down (an Unmount, a rollback): Unconfirmed ones go first — an
// Unmount proves dockerd had an answered mount of that ID.
func clampAnswers(tx *bolt.Tx, name string, counts Mounts) error {
	as, err := readAnswers(tx, name)
	if err != nil || len(as) == 0 {
		return err
	}
	for id, a := range as {
		for excess := a.total() - counts[id]; excess > 0; excess-- {
			switch {
			case a.Unconfirmed > 0:
				a.Unconfirmed--
			case a.Answering > 0:
				a.Answering--
			default:
				a.Recorded--
			}
		}
		as[id] = a
	}
	return writeAnswers(tx, name, as)
}

func readAnswers(tx *bolt.Tx, name string) (Answers, error) {
	out := Answers{}
	root := tx.Bucket(bucketAnswers)
	if root == nil {
		return out, nil
	}
	b := root.Bucket([]byte(name))
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		var a Answer
		if err := json.Unmarshal(v, &a); err != nil || a.Recorded < 0 || a.Answering < 0 || a.Unconfirmed < 0 {
			return fmt.Errorf("volume %q mount ID %q: corrupt answer record %q", name, k, v)
		}
		out[string(k)] = a
		return nil
	})
	return out, err
}

// writeAnswers replaces name's answers with as (dropping empty ones).
func writeAnswers(tx *bolt.Tx, name string, as Answers) error {
	if tx.Bucket(bucketAnswers) != nil {
		if err := tx.Bucket(bucketAnswers).DeleteBucket([]byte(name)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
	}
	var b *bolt.Bucket
	for id, a := range as {
		if a.total() == 0 {
			continue
		}
		if b == nil {
			root, err := tx.CreateBucketIfNotExists(bucketAnswers)
			if err != nil {
				return err
			}
			if b, err = root.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		data, _ := json.Marshal(a)
		if err := b.Put([]byte(id), data); err != nil {
			return err
		}
	}
	return nil
}

// deleteAnswers forgets name's answers (with its counts).
func deleteAnswers(tx *bolt.Tx, name string) error {
	root := tx.Bucket(bucketAnswers)
	if root == nil {
		return nil
	}
	err := root.DeleteBucket([]byte(name))
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil
	}
	return err
}
