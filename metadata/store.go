package metadata

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var (
	keyStoreID          = []byte("store_id")
	keyStoreMayCreate   = []byte("store_may_create")
	storeMayCreateValue = []byte("1")
)

// Store says which store this host joined: ID is the store's identity
// (set once the host first connected to it), MayCreate says that the host
// has joined none yet and started from an empty state directory, so it may
// create the store it is pointed at. Both empty: a host from before store
// identities were remembered, which joins the store it finds but never
// creates one.
type Store struct {
	ID        string
	MayCreate bool
}

// JoinedStore returns what this host remembers of its store.
func (db *DB) JoinedStore(ctx context.Context) (Store, error) {
	var s Store
	err := db.view(ctx, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.ID = string(meta.Get(keyStoreID))
		s.MayCreate = meta.Get(keyStoreMayCreate) != nil
		return nil
	})
	return s, err
}

// AllowStoreCreation records that this host may create its store: call it
// on the very first start, with an empty state directory. It is forgotten
// once the host joins a store (JoinStore).
func (db *DB) AllowStoreCreation(ctx context.Context) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyStoreID) != nil {
			return nil // joined already: creating is over
		}
		return meta.Put(keyStoreMayCreate, storeMayCreateValue)
	})
}

// JoinStore records id as the store this host joined, replacing any other,
// and ends the permission to create one.
func (db *DB) JoinStore(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("join store: empty store id")
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Delete(keyStoreMayCreate); err != nil {
			return err
		}
		return meta.Put(keyStoreID, []byte(id))
	})
}
