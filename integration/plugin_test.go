package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The "done when": create, write from one container, read from the
// next.
func TestManagedVolumeRoundTrip(t *testing.T) {
	requireSetup(t)
	v := mainEngine.volume(t, pluginName, "v1")
	mainEngine.runOnce(t, v, "echo hi > /data/f")
	if got := mainEngine.runOnce(t, v, "cat /data/f"); got != "hi" {
		t.Fatalf("second container read %q, want hi", got)
	}

	var inspect = docker(t, "volume", "inspect", "-f", "{{.Driver}} {{.Scope}} {{.CreatedAt}}", v)
	f := strings.Fields(inspect)
	if len(f) != 3 || f[0] != pluginName+":latest" || f[1] != "global" || strings.HasPrefix(f[2], "0001-") {
		t.Errorf("volume inspect: %q", inspect)
	}
	eventually(t, "the final snapshot after the container ended", func() bool {
		return mainEngine.status(t, v)["local"] == "ready"
	})
	st := mainEngine.status(t, v)
	if st["mounts"].(float64) != 0 || st["snapshot_interval"] != "5m0s" || st["head_snapshot"] == "" || st["lease"] != "released" {
		t.Errorf("status: %v", st)
	}
	eventually(t, "size measured after the container ended", func() bool {
		return mainEngine.status(t, v)["size_bytes"].(float64) == 3
	})
	t.Logf("volume filesystem: %v, snapshots %v", st["filesystem"], st["snapshot_consistency"])
	// The data lives in the state directory on the host: in a btrfs
	// subvolume of the pool image there (make install's default, auto,
	// on a kernel with btrfs), else in a directory.
	if st["filesystem"] == "btrfs" {
		if fi, err := os.Stat(filepath.Join(pluginState, "pool.img")); err != nil || fi.Size() == 0 {
			t.Errorf("btrfs volume, but no pool image in the state directory: %v", err)
		}
		if got := mainEngine.runOnce(t, v, "stat -f -c %t /data; stat -c %i /data"); got != "9123683e\n256" {
			t.Errorf("the volume as a container sees it: %q, want a btrfs subvolume root (filesystem type 9123683e, btrfs; inode 256)", got)
		}
		if st["snapshot_consistency"] != "point-in-time" {
			t.Errorf("a btrfs volume's snapshots are %v", st["snapshot_consistency"])
		}
	} else if b, err := os.ReadFile(filepath.Join(pluginState, "volumes", v, "data", "f")); err != nil || string(b) != "hi\n" {
		t.Errorf("host state dir has %q, %v", b, err)
	}
	if ls := docker(t, "volume", "ls", "-q", "--filter", "driver="+pluginName+":latest"); !strings.Contains(ls, v) {
		t.Errorf("volume ls does not list %s:\n%s", v, ls)
	}

	docker(t, "volume", "rm", v)
	if _, err := os.Stat(filepath.Join(pluginState, "volumes", v)); !os.IsNotExist(err) {
		t.Errorf("data left after docker volume rm: %v", err)
	}
	if out := dockerFails(t, "volume", "inspect", v); !strings.Contains(strings.ToLower(out), "no such volume") {
		t.Errorf("inspect after rm: %s", out)
	}
}

func TestManagedBadInput(t *testing.T) {
	requireSetup(t)
	for _, name := range []string{"../x", "a/b", ".", strings.Repeat("n", 129)} {
		out := dockerFails(t, "volume", "create", "-d", pluginName, name)
		if !strings.Contains(out, "invalid volume name") {
			t.Errorf("create %q: %s", name, out)
		}
	}
	out := dockerFails(t, "volume", "create", "-d", pluginName, "-o", "sise=1G", "opt-"+runID)
	if !strings.Contains(out, `unknown option "sise"`) || !strings.Contains(out, "snapshot_interval, standby, takeover") {
		t.Errorf("unknown option: %s", out)
	}
	out = dockerFails(t, "volume", "create", "-d", pluginName, "-o", "snapshot_interval=often", "opt-"+runID)
	if !strings.Contains(out, "snapshot_interval") || !strings.Contains(out, "duration") {
		t.Errorf("bad option value: %s", out)
	}
	if ls := docker(t, "volume", "ls", "-q"); strings.Contains(ls, "opt-"+runID) {
		t.Errorf("refused create left a volume: %s", ls)
	}

	v := mainEngine.volume(t, pluginName, "opts", "-o", "snapshot_interval=1m", "-o", "takeover=auto")
	docker(t, "volume", "create", "-d", pluginName, "-o", "snapshot_interval=60s", "-o", "takeover=auto", v)
	if st := mainEngine.status(t, v); st["snapshot_interval"] != "1m0s" || st["takeover"] != "auto" {
		t.Errorf("options in status: %v", st)
	}
	// dockerd asks Get before Create and records an existing volume as is,
	// so a different -o on an existing name never reaches Create through
	// docker volume create; the plugin's refusal is covered by driver tests.

	out = dockerFails(t, "volume", "rm", "never-created-"+runID)
	if !strings.Contains(strings.ToLower(out), "no such volume") {
		t.Errorf("rm unknown: %s", out)
	}
}

// docker cp into a running container mounts the same ID a second time and
// unmounts it once; the container must keep its volume.
func TestManagedCopyIntoRunningContainer(t *testing.T) {
	requireSetup(t)
	v := mainEngine.volume(t, pluginName, "cp")
	c := mainEngine.container(t, v)
	docker(t, "exec", c, "sh", "-c", "echo before > /data/a")
	if n := mainEngine.mounts(t, v); n != 1 {
		t.Fatalf("mounts with one container = %d", n)
	}
	src := filepath.Join(t.TempDir(), "b")
	os.WriteFile(src, []byte("copied\n"), 0o644)
	docker(t, "cp", src, c+":/data/b")
	if got := docker(t, "exec", c, "cat", "/data/a", "/data/b"); got != "before\ncopied" {
		t.Fatalf("container sees %q after docker cp", got)
	}
	if n := mainEngine.mounts(t, v); n != 1 {
		t.Errorf("mounts after docker cp = %d, want 1", n)
	}
	docker(t, "exec", c, "sh", "-c", "echo after > /data/c")

	out := dockerFails(t, "volume", "rm", v)
	if !strings.Contains(out, "in use") {
		t.Errorf("rm of a volume in use: %s", out)
	}
	docker(t, "rm", "-f", c)
	if n := mainEngine.mounts(t, v); n != 0 {
		t.Errorf("mounts after the container is gone = %d", n)
	}
	if got := mainEngine.runOnce(t, v, "cat /data/a /data/b /data/c"); got != "before\ncopied\nafter" {
		t.Errorf("new container reads %q", got)
	}
}

// kill -9 of the plugin while a container uses the volume: dockerd restarts
// the plugin, the container keeps its data, and the count is remembered.
func TestManagedPluginKilled(t *testing.T) {
	requireSetup(t)
	v := mainEngine.volume(t, pluginName, "kill")
	idle := mainEngine.volume(t, pluginName, "idle")
	c := mainEngine.container(t, v)
	docker(t, "exec", c, "sh", "-c", "echo one > /data/f")

	old := pluginPID(t)
	if old == 0 {
		t.Fatal("cannot find the plugin's process")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dockerd to restart the plugin", func() bool {
		p := pluginPID(t)
		return p != 0 && p != old
	})
	if n := mainEngine.mounts(t, v); n != 1 {
		t.Errorf("mounts after kill -9 = %d, want 1", n)
	}
	docker(t, "volume", "inspect", idle)
	docker(t, "exec", c, "sh", "-c", "echo two >> /data/f")
	// docker cp after the restart needs the host-side mount.
	src := filepath.Join(t.TempDir(), "g")
	os.WriteFile(src, []byte("three\n"), 0o644)
	docker(t, "cp", src, c+":/data/g")
	docker(t, "rm", "-f", c)
	if n := mainEngine.mounts(t, v); n != 0 {
		t.Errorf("mounts after the container is gone = %d", n)
	}
	if got := mainEngine.runOnce(t, v, "cat /data/f /data/g"); got != "one\ntwo\nthree" {
		t.Errorf("data after kill -9: %q", got)
	}
}

// docker plugin disable -f unmounts everything under the plugin; enable
// must bring the volumes and counts back.
func TestManagedPluginDisableEnable(t *testing.T) {
	requireSetup(t)
	v := mainEngine.volume(t, pluginName, "disable")
	c := mainEngine.container(t, v)
	docker(t, "exec", c, "sh", "-c", "echo kept > /data/f")
	docker(t, "plugin", "disable", "-f", pluginName)
	if got := docker(t, "exec", c, "cat", "/data/f"); got != "kept" {
		t.Errorf("running container lost its data on disable: %q", got)
	}
	docker(t, "plugin", "enable", pluginName)
	if n := mainEngine.mounts(t, v); n != 1 {
		t.Errorf("mounts after disable/enable = %d, want 1", n)
	}
	src := filepath.Join(t.TempDir(), "g")
	os.WriteFile(src, []byte("cp\n"), 0o644)
	docker(t, "cp", src, c+":/data/g")
	docker(t, "rm", "-f", c)
	if got := mainEngine.runOnce(t, v, "cat /data/f /data/g"); got != "kept\ncp" {
		t.Errorf("data after disable/enable: %q", got)
	}
	if n := mainEngine.mounts(t, v); n != 0 {
		t.Errorf("mounts at the end = %d", n)
	}
}

// pluginPID finds the managed plugin's process. 0: none.
func pluginPID(t *testing.T) int {
	t.Helper()
	return pluginProcess(docker(t, "plugin", "inspect", "-f", "{{.Id}}", pluginName))
}

// pluginProcess is the process running "/portvol serve" in the cgroup of
// the plugin with id (any engine's). 0: none.
func pluginProcess(id string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || string(cmdline) != "/portvol\x00serve\x00" {
			continue
		}
		cgroup, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err == nil && strings.Contains(string(cgroup), id) {
			return pid
		}
	}
	return 0
}

// Re-running make install upgrades in place: the old plugin is force-
// disabled and replaced while a container uses a volume.
func TestManagedReinstallKeepsVolumes(t *testing.T) {
	requireSetup(t)
	v := mainEngine.volume(t, pluginName, "upgrade")
	c := mainEngine.container(t, v)
	docker(t, "exec", c, "sh", "-c", "echo old > /data/f")
	oldID := docker(t, "plugin", "inspect", "-f", "{{.Id}}", pluginName)
	if out, err := run(t.Context(), "", "make", "-C", repoRoot, "install", "PLUGIN_NAME="+pluginName, "PLUGIN_STATE_DIR="+pluginState); err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}
	if id := docker(t, "plugin", "inspect", "-f", "{{.Id}} {{.Enabled}}", pluginName); id == oldID+" true" || !strings.HasSuffix(id, " true") {
		t.Fatalf("plugin after reinstall: %s (old id %s)", id, oldID)
	}
	if got := docker(t, "exec", c, "cat", "/data/f"); got != "old" {
		t.Errorf("running container lost its data on reinstall: %q", got)
	}
	if n := mainEngine.mounts(t, v); n != 1 {
		t.Errorf("mounts after reinstall = %d, want 1", n)
	}
	src := filepath.Join(t.TempDir(), "g")
	os.WriteFile(src, []byte("new\n"), 0o644)
	docker(t, "cp", src, c+":/data/g")
	docker(t, "rm", "-f", c)
	if got := mainEngine.runOnce(t, v, "cat /data/f /data/g"); got != "old\nnew" {
		t.Errorf("data after reinstall: %q", got)
	}
	if n := mainEngine.mounts(t, v); n != 0 {
		t.Errorf("mounts at the end = %d", n)
	}
}
