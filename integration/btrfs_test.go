package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The managed plugin built by make install can make and mount a btrfs
// pool from inside its container (--volume-fs btrfs: mkfs.btrfs in its
// rootfs, loop devices through allowAllDevices, mount with
// CAP_SYS_ADMIN), finds it again when re-enabled, and leaves no loop
// device attached when disabled.
func TestManagedBtrfsPool(t *testing.T) {
	requireSetup(t)
	name := pluginName + "-btrfs-" + runID
	state, err := os.MkdirTemp("/var/tmp", "portvol-it-btrfs-")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): it is cancelled before cleanups run, and a plugin
	// left enabled after its state directory is gone answers every later
	// test's lookups of unknown volumes on this engine.
	t.Cleanup(func() {
		run(context.Background(), "", "docker", "plugin", "disable", "-f", name)
		run(context.Background(), "", "docker", "plugin", "rm", "-f", name)
		os.RemoveAll(state)
	})
	// make install's plugin directory, with one file more: dockerd refuses
	// to create a second plugin from identical content.
	pdir := filepath.Join(state, "plugin")
	if out, err := run(t.Context(), "", "cp", "-a", filepath.Join(repoRoot, "build", "plugin"), pdir); err != nil {
		t.Fatalf("copying the plugin directory: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(pdir, "rootfs", "etc", "portvol-test-"+runID), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	docker(t, "plugin", "create", name, pdir)
	if err := os.RemoveAll(pdir); err != nil {
		t.Fatal(err)
	}
	docker(t, "plugin", "set", name, "state.source="+state, "PORTVOL_VOLUME_FS=btrfs", "PORTVOL_POOL_SIZE=512M")
	docker(t, "plugin", "enable", "--timeout", "60", name)
	id := docker(t, "plugin", "inspect", "-f", "{{.Id}}", name)

	image := filepath.Join(state, "pool.img")
	fi, err := os.Stat(image)
	if err != nil || fi.Size() != 512<<20 {
		t.Fatalf("pool image after enable: %v, %v", fi, err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	dev := poolDevice(t, id)
	if att := attached(t, image); att != dev {
		t.Fatalf("pool mounted from %s inside the plugin, but the image is attached to %q", dev, att)
	}

	// A new volume is a subvolume of the pool: its root, as a container
	// sees it, is a btrfs subvolume root (inode 256), and inspect says so.
	vol := "btrfs-" + runID
	docker(t, "volume", "create", "-d", name, vol)
	got := docker(t, "run", "--rm", "--label", "portvol-it", "--network", "none", "-v", vol+":/data", testImage,
		"sh", "-c", "echo hi > /data/f; stat -f -c %t /data; stat -c %i /data")
	if got != "9123683e\n256" {
		t.Errorf("a new volume as a container sees it: %q, want a btrfs subvolume root (filesystem type 9123683e, btrfs; inode 256)", got)
	}
	if st := docker(t, "volume", "inspect", "-f", "{{.Status.filesystem}} {{.Status.snapshot_consistency}}", vol); st != "btrfs point-in-time" {
		t.Errorf("docker volume inspect: %q, want btrfs point-in-time", st)
	}
	docker(t, "volume", "rm", vol)

	docker(t, "plugin", "disable", name)
	eventually(t, "the pool's loop device detaching after disable (autoclear)", func() bool { return attached(t, image) == "" })

	docker(t, "plugin", "enable", "--timeout", "60", name)
	dev = poolDevice(t, id)
	fi, err = os.Stat(image)
	if err != nil || fi.Sys().(*syscall.Stat_t).Ino != ino {
		t.Fatalf("re-enabling made a new pool image instead of mounting the old one: %v", err)
	}
	if att := attached(t, image); att != dev {
		t.Fatalf("after re-enable the pool is mounted from %s, the image attached to %q", dev, att)
	}
}

// poolDevice is the device the plugin's process has mounted btrfs from
// at the pool's mount point.
func poolDevice(t *testing.T, id string) string {
	t.Helper()
	var dev string
	eventually(t, "the plugin mounting its btrfs pool", func() bool {
		pid := pluginProcess(id)
		if pid == 0 {
			return false
		}
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "mountinfo"))
		if err != nil {
			return false
		}
		m := regexp.MustCompile(`(?m) /var/lib/portvol/pool \S+.* - btrfs (/dev/loop\d+) `).FindSubmatch(b)
		if m == nil {
			return false
		}
		dev = string(m[1])
		return true
	})
	return dev
}

// attached is the loop device serving image ("" if none).
func attached(t *testing.T, image string) string {
	t.Helper()
	out, err := run(t.Context(), "", "losetup", "-n", "-O", "NAME", "-j", image)
	if err != nil {
		t.Fatalf("losetup -j %s: %v: %s", image, err, out)
	}
	return strings.TrimSpace(out)
}
