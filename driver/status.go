package driver

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
)

// VolumeStatus is a volume as portvol status and docker volume inspect
// show it: who owns it, its latest snapshot, and this host's copy.
type VolumeStatus struct {
	Name string `json:"name"`
	// Owner is the host holding the lease, or the one that last held it.
	Owner string `json:"owner"`
	// Lease is held, released, none (never mounted) or unknown (the store
	// cannot be read).
	Lease        string `json:"lease"`
	Generation   uint64 `json:"generation"`
	HeadSnapshot string `json:"head_snapshot"`
	// HeadAge is how old the head snapshot is ("" without one).
	HeadAge string `json:"head_age"`
	// ConfirmedAge is how long ago this host, the holder, last found the
	// data unchanged since the head and so published nothing: the data is
	// that recent even when the head is older ("" if never).
	ConfirmedAge string `json:"confirmed_age,omitempty"`
	// Local is this host's copy: absent, restoring N%, ready, mounted,
	// releasing or diverged.
	Local         string `json:"local"`
	LocalSnapshot string `json:"local_snapshot"`
	Mounts        int    `json:"mounts"`
	// TakenOver says from whom the current generation was taken and what
	// was lost, or what the last takeover by this host lost.
	TakenOver string `json:"taken_over,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// KeptCopies are copies of this host's data moved aside (fenced or
	// conflicting), never deleted by portvol.
	KeptCopies []string `json:"kept_copies,omitempty"`
	// Store is "ok" or why the store could not be read.
	Store string `json:"store"`
}

// periodicNote goes with volumes that snapshot periodically.
const periodicNote = "periodic snapshots are taken while containers write (as consistent as a crash at that moment); the final snapshot at unmount is quiescent"

// describe builds the status of a volume from this host's record and
// mounts and, if in is not nil, what the store said.
func (d *Driver) describe(rec metadata.Volume, mounts metadata.Mounts, in *info, storeErr error) VolumeStatus {
	st := VolumeStatus{Name: rec.Name, Lease: "unknown", LocalSnapshot: rec.LocalSnapshot, Mounts: mounts.Total(), LastError: rec.LastError, Store: "ok"}
	if storeErr != nil {
		st.Store = "unreachable: " + storeErr.Error()
	}
	for _, a := range rec.Aside {
		st.KeptCopies = append(st.KeptCopies, filepath.Join(d.stateDir, a))
	}
	v := d.peek(rec.Name)
	var held *lease.Lease
	if v != nil {
		held = v.holding()
	}
	switch {
	case held != nil:
		ls := held.Status()
		st.Owner, st.Lease, st.Generation, st.HeadSnapshot = d.hostID, "held", ls.Generation, ls.Head
		if ls.Takeover != nil {
			// This host took it: its own note names the head it restored.
			st.TakenOver = d.takeoverText(rec.Name, ls.Generation, ls.Takeover, ls.Head, ls.Generation, rec.TakenOver)
		}
	case in != nil && in.Head.Exists:
		r := in.Head.Record
		st.Owner, st.Lease, st.Generation, st.HeadSnapshot = r.Owner, string(r.State), r.Generation, r.Head
		if r.Takeover != nil {
			st.TakenOver = d.takeoverText(rec.Name, r.Generation, r.Takeover, r.Head, r.HeadGeneration, rec.TakenOver)
		}
	case in != nil:
		st.Lease = "none"
	}
	if t, ok := snapshot.IDTime(st.HeadSnapshot); ok {
		st.HeadAge = time.Since(t).Round(time.Second).String()
	}
	if !rec.ConfirmedAt.IsZero() && rec.LocalSnapshot == st.HeadSnapshot && st.HeadSnapshot != "" {
		st.ConfirmedAge = time.Since(rec.ConfirmedAt).Round(time.Second).String()
	}
	if st.TakenOver == "" {
		st.TakenOver = rec.TakenOver
	}
	st.Local = d.localText(rec, mounts, v)
	return st
}

// localText is the Local field.
func (d *Driver) localText(rec metadata.Volume, mounts metadata.Mounts, v *vstate) string {
	var j *job
	if v != nil {
		j = v.currentJob()
	}
	switch {
	case j != nil && j.kind == "restore":
		if p := j.progress(); p.Bytes > 0 {
			return fmt.Sprintf("restoring %d%%", p.BytesDone*100/p.Bytes)
		}
		return "restoring"
	case rec.Local == metadata.LocalDiverged:
		return "diverged"
	case mounts.Total() > 0:
		return "mounted"
	case j != nil && j.kind == "release", rec.Local == metadata.LocalReleasing:
		return "releasing"
	case rec.Local == metadata.LocalReady, rec.Local == metadata.LocalPresent, rec.Local == metadata.LocalMounted:
		return "ready"
	}
	return "absent"
}

// Map is the Status map of docker volume inspect: the fields above plus
// this host's mount counts, size and the volume's options.
func (st VolumeStatus) Map(rec metadata.Volume, mounts metadata.Mounts) map[string]any {
	sizeAt := "never"
	if !rec.SizeAt.IsZero() {
		sizeAt = rec.SizeAt.Format(time.RFC3339)
	}
	m := map[string]any{
		"owner":             st.Owner,
		"lease":             st.Lease,
		"generation":        st.Generation,
		"head_snapshot":     st.HeadSnapshot,
		"head_age":          st.HeadAge,
		"confirmed_age":     st.ConfirmedAge,
		"local":             st.Local,
		"local_snapshot":    st.LocalSnapshot,
		"last_error":        st.LastError,
		"store":             st.Store,
		"mounted":           mounts.Total() > 0,
		"mounts":            mounts.Total(),
		"mount_ids":         len(mounts),
		"size_bytes":        rec.SizeBytes,
		"size_measured_at":  sizeAt,
		"created_by":        rec.CreatedBy,
		OptSnapshotInterval: rec.Options[OptSnapshotInterval],
		OptTakeover:         rec.Options[OptTakeover],
	}
	if st.TakenOver != "" {
		m["taken_over"] = st.TakenOver
	}
	if len(st.KeptCopies) > 0 {
		m["kept_copies"] = st.KeptCopies
	}
	if iv, err := time.ParseDuration(rec.Options[OptSnapshotInterval]); err == nil && iv > 0 {
		m["snapshot_note"] = periodicNote
	}
	return m
}

// peek returns name's vstate if it has one.
func (d *Driver) peek(name string) *vstate {
	d.volsMu.Lock()
	defer d.volsMu.Unlock()
	return d.vols[name]
}
