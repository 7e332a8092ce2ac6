package driver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/portvol/portvol/metadata"
)

// Mount counts and the answers dockerd may not have had.
//
// dockerd unmounts exactly the mount IDs whose Mount it saw succeed: after
// an error, a timeout or a connection that broke (the plugin killed), it
// never sends Unmount for that ID, and after a plugin restart it replays
// nothing. A count recorded for a Mount whose answer never reached dockerd
// therefore stays for ever, and keeps the volume mounted here and its
// lease held, so no other host can mount it. Dropping a count a container
// still uses is worse: the final snapshot is taken and the lease released
// under a running container, and another host's copy and this one both
// take writes. So a count is dropped only when it is certain that nothing
// uses it:
//
//   - The answer's progress is durable (metadata.Answer): Mount records the
//     count as Recorded; before the first byte of the answer is written the
//     handler makes it Answering, and once the answer is written and
//     flushed, answered (ConfirmMount). A write that fails, or a caller
//     that hung up, takes the count back (abandonMount), as before.
//   - At start (Reconcile), a count still Recorded belongs to a Mount the
//     previous process never answered — not one byte of it — so dockerd
//     saw it fail: dropped. dockerd retries a Mount whose connection broke
//     for up to about 30 s, with the same ID, so the retry counts afresh.
//   - A count left Answering may have reached dockerd just before the
//     process died, and then a container runs with it: it is kept, as
//     Unconfirmed, and shown as unconfirmed_mounts. It ends with its
//     Unmount (a container that stops), or with the evidence below.
//   - The host rebooted since the counts were recorded (the kernel's boot
//     id changed): no process of that boot is alive, so every count of
//     every volume is dropped (this also frees volumes whose dockerd died
//     with the host and never unmounted).
//   - dockerd asks to Remove the volume: dockerd does so only when no
//     container on this host references the volume, so Unconfirmed counts
//     are not used by any and are dropped (answered ones still refuse the
//     removal).
//
// What is not done: reading the kernel's mount table for users. A managed
// plugin has its own mount and PID namespaces; the containers' bind
// mounts of a volume live in theirs, invisible from here, so "no bind
// mount seen" would not prove "unused".

// Answer stages, for answerHook (tests inject a process death there).
const (
	stageRecorded = "recorded" // counted, not a byte answered
	stageAnswered = "answered" // answer written, not yet confirmed
)

// bootIDPath is where the kernel says which boot this is.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

func readBootID() (string, error) {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// answerMount writes the answer to a Mount that recorded its count, with
// the answer's progress made durable around it (see above).
func (h *handler) answerMount(w http.ResponseWriter, req request, resp any) {
	d := h.d
	d.hookAnswer(stageRecorded, req.Name, req.ID)
	ctx := context.Background()
	if err := d.db.MarkAnswering(ctx, req.Name, req.ID); err != nil {
		err = fmt.Errorf("volume %q: record the mount's answer: %w", req.Name, err)
		d.abandonMount(req.Name, req.ID, err)
		reply(w, http.StatusInternalServerError, map[string]string{"Err": err.Error()})
		return
	}
	reply(w, http.StatusOK, resp)
	err := http.NewResponseController(w).Flush()
	d.hookAnswer(stageAnswered, req.Name, req.ID)
	if err != nil {
		d.abandonMount(req.Name, req.ID, fmt.Errorf("answer not delivered: %w", err))
		return
	}
	if err := d.db.ConfirmMount(ctx, req.Name, req.ID); err != nil {
		// It stays Answering: at the next start it is kept, Unconfirmed.
		h.log.WithField("volume", req.Name).WithField("mount_id", req.ID).WithError(err).Warn("could not record that a Mount was answered")
	}
}

func (d *Driver) hookAnswer(stage, name, id string) {
	if d.answerHook != nil {
		d.answerHook(stage, name, id)
	}
}

// abandonMount takes back a counted mount whose answer did not reach
// dockerd (it never unmounts it), under the volume lock.
func (d *Driver) abandonMount(name, id string, why error) {
	ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
	defer cancel()
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		d.log.WithField("volume", name).WithField("mount_id", id).WithError(err).Error("could not take back the count of an unanswered mount; the next start drops it")
		return
	}
	defer unlock()
	d.log.WithField("volume", name).WithField("mount_id", id).WithError(why).Warn("Mount not answered")
	d.rollbackMount(ctx, metadata.Volume{Name: name}, id)
}

// settleCounts runs at start, before Reconcile reads the counts: it drops
// the counts of another boot and those whose Mount was never answered,
// and keeps the rest (see above).
func (d *Driver) settleCounts(ctx context.Context) error {
	boot, err := d.bootID()
	if err != nil {
		d.log.WithError(err).Warn("cannot read the boot id: mount counts of an earlier boot are kept")
	}
	if boot != "" {
		prev, err := d.db.BootID(ctx)
		if err != nil {
			return err
		}
		if prev != "" && prev != boot {
			names, err := d.db.DropAllMounts(ctx)
			if err != nil {
				return err
			}
			for _, n := range names {
				d.log.WithField("volume", n).Warn("dropped the mount counts of an earlier boot of this host: no container of that boot is running")
			}
		}
		if prev != boot {
			if err := d.db.SetBootID(ctx, boot); err != nil {
				return err
			}
		}
	}
	dropped, err := d.db.SettleAnswers(ctx)
	if err != nil {
		return err
	}
	for name, ids := range dropped {
		for _, id := range ids {
			d.log.WithField("volume", name).WithField("mount_id", id).Warn("dropped the count of a Mount this plugin stopped before answering: dockerd saw it fail and never unmounts it")
		}
	}
	return nil
}

// dropUnconfirmedForRemove drops name's Unconfirmed counts when they are
// all it has (a Remove from dockerd proves no container uses them), and
// returns the counts left.
func (d *Driver) dropUnconfirmedForRemove(ctx context.Context, name string, mounts metadata.Mounts) (metadata.Mounts, error) {
	as, err := d.db.Answers(ctx, name)
	if err != nil {
		return mounts, err
	}
	if n := as.Unconfirmed(); n == 0 || n < mounts.Total() {
		return mounts, nil
	}
	left, err := d.db.DropUnconfirmed(ctx, name)
	if err != nil {
		return mounts, err
	}
	d.log.WithField("volume", name).Warn("dockerd removes the volume, so no container uses it: dropped the counts of Mounts whose answer was never confirmed")
	if left.Total() == 0 {
		if err := d.lastUnmount(ctx, name); err != nil && !errors.Is(err, ErrNotFound) {
			return left, err
		}
	}
	return left, nil
}
