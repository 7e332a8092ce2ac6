package driver

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/localcopy"
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
	// UnconfirmedMounts counts mounts whose answer may not have reached
	// dockerd (the plugin stopped while answering; see driver/answers.go).
	UnconfirmedMounts int `json:"unconfirmed_mounts,omitempty"`
	// TakenOver says from whom the current generation was taken and what
	// was lost, or what the last takeover by this host lost.
	TakenOver string `json:"taken_over,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// KeptCopies are copies of this host's data moved aside (fenced or
	// conflicting), never deleted by portvol.
	KeptCopies []string `json:"kept_copies,omitempty"`
	// Store is "ok" or why the store could not be read.
	Store string `json:"store"`
	// Filesystem is where this host keeps the copy: btrfs (a subvolume)
	// or directory.
	Filesystem string `json:"filesystem"`
	// SnapshotConsistency is what a periodic snapshot of this copy is
	// worth: point-in-time (read from one frozen instant of the whole
	// volume) or file-by-file (read from the live directory).
	SnapshotConsistency string `json:"snapshot_consistency"`
	// SizeLimitBytes is the size limit (option size), 0 for none;
	// SizeLimitEnforced says whether this host's copy enforces it (a
	// directory copy cannot).
	SizeLimitBytes    int64 `json:"size_limit_bytes"`
	SizeLimitEnforced bool  `json:"size_limit_enforced"`
	// UsedBytes is the disk space this host's copy takes (the quota
	// group's count for a limited subvolume, else as last measured).
	UsedBytes int64 `json:"used_bytes"`
}

// Notes that go with volumes that snapshot periodically, by consistency.
const (
	periodicNote           = "periodic snapshots are read from a read-only btrfs snapshot taken at one instant (as consistent as a crash at that instant, which databases recover from); the final snapshot at unmount is quiescent"
	periodicNoteFileByFile = "periodic snapshots are copied file by file while containers write (not a valid backup of a running database: use btrfs volumes for that); the final snapshot at unmount is quiescent"
)

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
		if r.State == lease.Released && r.Generation == 0 {
			st.Owner, st.Lease = "", "none" // claimed by its Create, never held
		}
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
	d.describeCopy(&st, rec)
	if as, err := d.db.Answers(context.Background(), rec.Name); err == nil {
		st.UnconfirmedMounts = as.Unconfirmed()
	}
	return st
}

// describeCopy fills in where the copy lives and its size.
func (d *Driver) describeCopy(st *VolumeStatus, rec metadata.Volume) {
	st.Filesystem, st.SizeLimitBytes, st.UsedBytes = fsName(rec), sizeLimit(rec.Options), rec.UsedBytes
	c, err := d.localOf(rec)
	if err != nil {
		st.SnapshotConsistency = "unknown"
		return
	}
	if rec.Local == metadata.LocalAbsent && rec.Filesystem == "" {
		c = d.copies // no copy yet: the next one goes there
		st.Filesystem = c.Filesystem()
	}
	st.SnapshotConsistency = string(c.Consistency())
	st.SizeLimitEnforced = st.SizeLimitBytes > 0 && c.Filesystem() == localcopy.FilesystemBtrfs
	if st.SizeLimitEnforced {
		// The quota group's count: one ioctl, current as of the last commit.
		if u, err := c.Usage(context.Background(), rec.Name); err == nil {
			st.UsedBytes = u.Used
		}
	}
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
		"owner":                st.Owner,
		"lease":                st.Lease,
		"generation":           st.Generation,
		"head_snapshot":        st.HeadSnapshot,
		"head_age":             st.HeadAge,
		"confirmed_age":        st.ConfirmedAge,
		"local":                st.Local,
		"local_snapshot":       st.LocalSnapshot,
		"last_error":           st.LastError,
		"store":                st.Store,
		"mounted":              mounts.Total() > 0,
		"mounts":               mounts.Total(),
		"mount_ids":            len(mounts),
		"size_bytes":           rec.SizeBytes,
		"size_measured_at":     sizeAt,
		"created_by":           rec.CreatedBy,
		"filesystem":           st.Filesystem,
		"snapshot_consistency": st.SnapshotConsistency,
		"size_limit_bytes":     st.SizeLimitBytes,
		"used_bytes":           st.UsedBytes,
		OptSnapshotInterval:    rec.Options[OptSnapshotInterval],
		OptTakeover:            rec.Options[OptTakeover],
	}
	if st.TakenOver != "" {
		m["taken_over"] = st.TakenOver
	}
	if st.UnconfirmedMounts > 0 {
		m["unconfirmed_mounts"] = st.UnconfirmedMounts
		m["unconfirmed_note"] = unconfirmedNote
	}
	if len(st.KeptCopies) > 0 {
		m["kept_copies"] = st.KeptCopies
	}
	if st.SizeLimitBytes > 0 && !st.SizeLimitEnforced {
		m["size_limit_note"] = "this host keeps the volume in a directory, which cannot enforce the size limit (use --volume-fs btrfs)"
	}
	if iv, err := time.ParseDuration(rec.Options[OptSnapshotInterval]); err == nil && iv > 0 {
		m["snapshot_note"] = periodicNote
		if st.SnapshotConsistency != string(localcopy.ConsistencyPointInTime) {
			m["snapshot_note"] = periodicNoteFileByFile
		}
	}
	return m
}

// peek returns name's vstate if it has one.
func (d *Driver) peek(name string) *vstate {
	d.volsMu.Lock()
	defer d.volsMu.Unlock()
	return d.vols[name]
}

// unconfirmedNote goes with unconfirmed_mounts.
const unconfirmedNote = "the plugin stopped while answering these Mounts, so whether dockerd got the answer is unknown; they are kept (a container may use them) until their Unmount, a reboot of the host, or a docker volume rm (which dockerd sends only when no container uses the volume)"
