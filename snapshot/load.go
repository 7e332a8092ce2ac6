package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/portvol/portvol/transfer"
	"golang.org/x/sync/errgroup"
)

// Load reads and verifies the manifest of snapshot id of volume. A
// snapshot that does not exist gives ErrNotFound; a damaged or hostile
// manifest gives ErrCorrupt naming the object.
func (r *Repo) Load(ctx context.Context, volume, id string) (*Manifest, error) {
	m, err := r.loadManifest(ctx, volume, id)
	if err != nil {
		return nil, err
	}
	return m, r.loadContent(ctx, m)
}

// loadContent fetches a format 2 manifest's list parts (format 1
// manifests hold their chunks already).
func (r *Repo) loadContent(ctx context.Context, m *Manifest) error {
	if m.Version >= 2 {
		if err := r.loadParts(ctx, m); err != nil {
			return fmt.Errorf("volume %q: snapshot %s: %w", m.Volume, m.ID, err)
		}
	}
	return nil
}

// loadManifest reads, verifies and decodes the manifest object alone.
func (r *Repo) loadManifest(ctx context.Context, volume, id string) (*Manifest, error) {
	if err := checkVolume(volume); err != nil {
		return nil, err
	}
	if err := checkSnapshotID(id); err != nil {
		return nil, err
	}
	key := manifestKey(volume, id)
	data, err := r.readSmall(ctx, key, maxManifestSize)
	if errors.Is(err, transfer.ErrNotExist) {
		return nil, fmt.Errorf("volume %q: snapshot %s: %w", volume, id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %q: reading manifest %s: %w", volume, key, err)
	}
	m, err := decodeManifest(data, key, r.crypt)
	if err != nil {
		return nil, fmt.Errorf("volume %q: manifest %s: %w", volume, key, err)
	}
	if m.ID != id || m.Volume != volume {
		return nil, fmt.Errorf("volume %q: manifest %s describes %s of volume %q: %w", volume, key, m.ID, m.Volume, ErrCorrupt)
	}
	return m, nil
}

// List returns the snapshots of volume, oldest first, reading only each
// manifest's header.
func (r *Repo) List(ctx context.Context, volume string) ([]Info, error) {
	if err := checkVolume(volume); err != nil {
		return nil, err
	}
	prefix := snapshotsPrefix(volume)
	var ids []string
	err := r.store.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
		if id := strings.TrimPrefix(oi.Key, prefix); ValidSnapshotID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("volume %q: listing snapshots: %w", volume, err)
	}
	infos := make([]Info, len(ids))
	errs := make([]error, len(ids))
	// Every manifest is read, so that the error names each bad one: the
	// functions put their errors in errs rather than stopping the group.
	var g errgroup.Group
	g.SetLimit(r.transfers)
	for i, id := range ids {
		g.Go(func() error {
			infos[i], errs[i] = r.loadInfo(ctx, volume, id)
			return nil
		})
	}
	if err := cmp.Or(g.Wait(), errors.Join(errs...)); err != nil {
		return nil, err
	}
	slices.SortFunc(infos, func(a, b Info) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return infos, nil
}

// Info reads only the header of snapshot id of volume's manifest: what
// List shows for each snapshot, for one.
func (r *Repo) Info(ctx context.Context, volume, id string) (Info, error) {
	if err := checkVolume(volume); err != nil {
		return Info{}, err
	}
	if err := checkSnapshotID(id); err != nil {
		return Info{}, err
	}
	return r.loadInfo(ctx, volume, id)
}

func (r *Repo) loadInfo(ctx context.Context, volume, id string) (Info, error) {
	key := manifestKey(volume, id)
	rc, err := r.store.Get(ctx, key, 0, manifestPrefixLen+maxHeaderSize)
	if err != nil {
		return Info{}, fmt.Errorf("volume %q: reading manifest %s: %w", volume, key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, manifestPrefixLen+maxHeaderSize))
	if err != nil {
		return Info{}, fmt.Errorf("volume %q: reading manifest %s: %w", volume, key, err)
	}
	in, _, _, _, err := decodeManifestHeader(data, key, r.crypt)
	if err != nil {
		return Info{}, fmt.Errorf("volume %q: manifest %s: %w", volume, key, err)
	}
	if in.ID != id || in.Volume != volume {
		return Info{}, fmt.Errorf("volume %q: manifest %s describes %s of volume %q: %w", volume, key, in.ID, in.Volume, ErrCorrupt)
	}
	return in, nil
}
