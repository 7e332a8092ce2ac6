package driver

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCapabilitiesAndActivate(t *testing.T) {
	e := newEnv(t)
	out := e.ok("VolumeDriver.Capabilities", map[string]any{})
	if scope := out["Capabilities"].(map[string]any)["Scope"]; scope != "global" {
		t.Errorf("Scope = %v, want global", scope)
	}
	out = e.ok("Plugin.Activate", "")
	if impl, _ := out["Implements"].([]any); len(impl) != 1 || impl[0] != "VolumeDriver" {
		t.Errorf("Activate = %v", out)
	}
}

func TestCreateRejectsBadNames(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", 129)
	for _, name := range []string{"", ".", "..", "../x", "a/b", "/abs", "-a", "_a", ".hidden", "sp ace", "x:y", "ünï", "trail/", long} {
		msg := e.fail("VolumeDriver.Create", map[string]any{"Name": name})
		if !strings.Contains(msg, "invalid volume name") {
			t.Errorf("Create(%q): error %q does not say the name is invalid", name, msg)
		}
		if name == long && !strings.Contains(msg, "129 characters") {
			t.Errorf("Create(129 chars): error %q does not give the length", msg)
		}
	}
	// Nothing was created anywhere for them.
	entries, _ := os.ReadDir(filepath.Join(e.stateDir, "volumes"))
	if len(entries) != 0 {
		t.Errorf("bad names left directories: %v", entries)
	}
	if vols := e.ok("VolumeDriver.List", map[string]any{})["Volumes"].([]any); len(vols) != 0 {
		t.Errorf("bad names left volumes: %v", vols)
	}
	for _, name := range []string{"a", "A-b_c.d", "a..b", "0", strings.Repeat("z", 128)} {
		e.ok("VolumeDriver.Create", map[string]any{"Name": name})
	}
}

func TestCreateOptions(t *testing.T) {
	e := newEnv(t)
	msg := e.fail("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"sise": "1G"}})
	if !strings.Contains(msg, `unknown option "sise"`) || !strings.Contains(msg, "valid options are: keep_daily, keep_hourly, keep_last, keep_monthly, keep_weekly, size, snapshot_interval, standby, takeover") {
		t.Errorf("unknown option error = %q", msg)
	}
	for _, bad := range []map[string]string{
		{"snapshot_interval": "often"}, {"snapshot_interval": "-5m"}, {"snapshot_interval": "5ms"},
		{"snapshot_interval": ""}, {"takeover": "maybe"},
		{"keep_last": "-1"}, {"keep_daily": "seven"}, {"keep_weekly": "1e9"},
		{"size": "lots"}, {"size": "512k"}, {"size": "-1G"}, {"size": "20X"}, {"size": ""},
	} {
		msg := e.fail("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": bad})
		for k := range bad {
			if !strings.Contains(msg, "option "+k) {
				t.Errorf("Create with %v: error %q does not name the option", bad, msg)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "volumes", "v")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused Create left data behind: %v", err)
	}

	e.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "60s", "takeover": "AUTO"}})
	// The same options, written differently, or repeated: success.
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "1m", "takeover": "auto"}})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "60s", "takeover": "AUTO"}})
	msg = e.fail("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "2m"}})
	if !strings.Contains(msg, "already exists with other options") || !strings.Contains(msg, "snapshot_interval") {
		t.Errorf("conflicting Create error = %q", msg)
	}
	st := e.status("v")
	if st["snapshot_interval"] != "1m0s" || st["takeover"] != "auto" {
		t.Errorf("status options = %v", st)
	}

	// Defaults count as given: no options equals the defaults spelled out.
	e.ok("VolumeDriver.Create", map[string]any{"Name": "w"})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "w", "Opts": map[string]string{"snapshot_interval": "5m", "takeover": "manual"}})
	e.ok("VolumeDriver.Create", `{"Name":"w","Opts":null}`)
	st = e.status("w")
	if st["snapshot_interval"] != "5m0s" || st["takeover"] != "manual" {
		t.Errorf("default options in status = %v", st)
	}
	e.ok("VolumeDriver.Create", map[string]any{"Name": "off", "Opts": map[string]string{"snapshot_interval": "0"}})
	if st := e.status("off"); st["snapshot_interval"] != "0s" {
		t.Errorf("snapshot_interval=0 shows as %v", st["snapshot_interval"])
	}
}

func TestGetAndList(t *testing.T) {
	e := newEnv(t)
	msg := e.fail("VolumeDriver.Get", map[string]any{"Name": "nope"})
	if !strings.Contains(msg, `"nope" does not exist`) {
		t.Errorf("Get unknown: %q", msg)
	}
	e.fail("VolumeDriver.Get", map[string]any{"Name": "../etc"})
	e.fail("VolumeDriver.Path", map[string]any{"Name": "nope"})

	before := time.Now().Add(-time.Second)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v1"})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v2"})
	v := e.ok("VolumeDriver.Get", map[string]any{"Name": "v1"})["Volume"].(map[string]any)
	created, err := time.Parse(time.RFC3339, v["CreatedAt"].(string))
	if err != nil || created.Before(before.Truncate(time.Second)) || created.After(time.Now()) {
		t.Errorf("CreatedAt %v: %v", v["CreatedAt"], err)
	}
	st := v["Status"].(map[string]any)
	if st["local"] != "ready" || st["mounts"].(float64) != 0 || st["size_bytes"].(float64) != 0 || st["lease"] != "none" || st["store"] != "ok" {
		t.Errorf("Status of a new volume = %v", st)
	}
	if _, ok := v["Mountpoint"]; ok {
		t.Errorf("unmounted volume has a Mountpoint: %v", v)
	}
	vols := e.ok("VolumeDriver.List", map[string]any{})["Volumes"].([]any)
	if len(vols) != 2 || vols[0].(map[string]any)["Name"] != "v1" || vols[1].(map[string]any)["CreatedAt"] == nil {
		t.Errorf("List = %v", vols)
	}
	if mp := e.ok("VolumeDriver.Path", map[string]any{"Name": "v1"})["Mountpoint"]; mp != "" {
		t.Errorf("Path of an unmounted volume = %v", mp)
	}
	if entries, _ := os.ReadDir(e.root); len(entries) != 0 {
		t.Errorf("Path or Get created mountpoints: %v", entries)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	status, out, err := e.call(context.Background(), "VolumeDriver.Create", `{"Name":`)
	if err != nil || status != http.StatusBadRequest || !strings.Contains(out["Err"].(string), "malformed Create request") {
		t.Errorf("malformed JSON: %d %v %v", status, out, err)
	}
	status, out, _ = e.call(context.Background(), "VolumeDriver.Frobnicate", `{}`)
	if status != http.StatusNotFound || out["Err"] == nil {
		t.Errorf("unknown call: %d %v", status, out)
	}
	// List and Capabilities with an empty body, as some clients send.
	e.ok("VolumeDriver.List", "")
}

func TestMountUnmountCounts(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	mp := e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "a"})["Mountpoint"].(string)
	if !filepath.IsAbs(mp) || filepath.Dir(mp) != e.d.mountRoot {
		t.Fatalf("Mountpoint %q is not <mount-root>/v", mp)
	}
	// Data written through the Mountpoint lands in the state directory.
	if err := os.WriteFile(filepath.Join(mp, "f"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(e.stateDir, "volumes", "v", "data", "f")); err != nil || string(b) != "hi" {
		t.Fatalf("data dir has %q, %v", b, err)
	}
	if got := e.ok("VolumeDriver.Path", map[string]any{"Name": "v"})["Mountpoint"]; got != mp {
		t.Errorf("Path while mounted = %v, want %s", got, mp)
	}
	if got := e.ok("VolumeDriver.Get", map[string]any{"Name": "v"})["Volume"].(map[string]any)["Mountpoint"]; got != mp {
		t.Errorf("Get Mountpoint while mounted = %v", got)
	}

	// docker cp into the running container: same ID again, then one Unmount.
	e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "a"})
	e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "b"})
	if n := e.mounts("v"); n != 3 {
		t.Fatalf("mounts = %d, want 3", n)
	}
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": "a"})
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": "b"})
	if !isMounted(t, mp) {
		t.Fatal("unmounted while ID a still counts 1")
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "f")); string(b) != "hi" {
		t.Fatalf("data not visible through the remaining mount: %q", b)
	}
	// Unknown IDs and volumes unmount successfully and change nothing.
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": "never-mounted"})
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "no-such-volume", "ID": "a"})
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "../x", "ID": "a"})
	if n := e.mounts("v"); n != 1 {
		t.Fatalf("mounts = %d, want 1", n)
	}

	msg := e.fail("VolumeDriver.Remove", map[string]any{"Name": "v"})
	if !strings.Contains(msg, "in use") || !strings.Contains(msg, "mounted 1 time") {
		t.Errorf("Remove while mounted: %q", msg)
	}

	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": "a"})
	if isMounted(t, mp) {
		t.Fatal("still mounted after the last Unmount")
	}
	if _, err := os.Stat(mp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mountpoint left after the last Unmount: %v", err)
	}
	if got := e.ok("VolumeDriver.Path", map[string]any{"Name": "v"})["Mountpoint"]; got != "" {
		t.Errorf("Path after unmount = %v", got)
	}
	eventually(t, "size measured after the last unmount", func() bool { return e.status("v")["size_bytes"].(float64) == 2 })

	e.ok("VolumeDriver.Remove", map[string]any{"Name": "v"})
	e.ok("VolumeDriver.Remove", map[string]any{"Name": "v"}) // unknown now: success
	e.fail("VolumeDriver.Get", map[string]any{"Name": "v"})
	if _, err := os.Stat(filepath.Join(e.stateDir, "volumes", "v")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data left after Remove: %v", err)
	}
	eventually(t, "trash emptied", func() bool {
		entries, _ := os.ReadDir(filepath.Join(e.stateDir, "trash"))
		return len(entries) == 0
	})
	// A new volume of the same name starts empty.
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	mp = e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "c"})["Mountpoint"].(string)
	if entries, _ := os.ReadDir(mp); len(entries) != 0 {
		t.Errorf("recreated volume has old data: %v", entries)
	}
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": "c"})
}

func TestMountBadInput(t *testing.T) {
	e := newEnv(t)
	if msg := e.fail("VolumeDriver.Mount", map[string]any{"Name": "nope", "ID": "a"}); !strings.Contains(msg, "does not exist") {
		t.Errorf("Mount unknown: %q", msg)
	}
	if msg := e.fail("VolumeDriver.Mount", map[string]any{"Name": "../x", "ID": "a"}); !strings.Contains(msg, "invalid volume name") {
		t.Errorf("Mount bad name: %q", msg)
	}
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	if msg := e.fail("VolumeDriver.Mount", map[string]any{"Name": "v"}); !strings.Contains(msg, "mount ID") {
		t.Errorf("Mount without ID: %q", msg)
	}
	if msg := e.fail("VolumeDriver.Remove", map[string]any{"Name": "a/b"}); !strings.Contains(msg, "invalid volume name") {
		t.Errorf("Remove bad name: %q", msg)
	}
}

func TestStatePersistsAcrossRestarts(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"takeover": "auto"}})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "idle"})
	mp := e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "a"})["Mountpoint"].(string)
	e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "a"})
	os.WriteFile(filepath.Join(mp, "f"), []byte("kept"), 0o644)

	// The plugin process dies (kill -9): the kernel keeps the mount.
	e.stop()
	e.start(nil)
	if n := e.mounts("v"); n != 2 {
		t.Fatalf("mounts after restart = %d, want 2", n)
	}
	if st := e.status("v"); st["takeover"] != "auto" {
		t.Errorf("options lost: %v", st)
	}
	e.ok("VolumeDriver.Get", map[string]any{"Name": "idle"})

	// Plugin disable / engine restart: dockerd unmounts everything.
	e.stop()
	if err := (sysMounter{}).Unmount(mp); err != nil {
		t.Fatal(err)
	}
	e.start(nil)
	if !isMounted(t, mp) {
		t.Fatal("Reconcile did not restore the bind mount of a mounted volume")
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "f")); string(b) != "kept" {
		t.Fatalf("data through the restored mount = %q", b)
	}
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": "a"})
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": "a"})
	if isMounted(t, mp) {
		t.Fatal("still mounted after both unmounts")
	}
}

func TestMountRedoesBindAfterDockerdUnmounted(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	mp := e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "a"})["Mountpoint"].(string)
	(sysMounter{}).Unmount(mp) // dockerd's clean-up, with the plugin still running
	e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "b"})
	if !isMounted(t, mp) || !sameDir(mp, filepath.Join(e.stateDir, "volumes", "v", "data")) {
		t.Fatal("second Mount did not put the bind back")
	}
	// And it does not stack a second bind when one is in place.
	e.ok("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "c"})
	for _, id := range []string{"a", "b", "c"} {
		e.ok("VolumeDriver.Unmount", map[string]any{"Name": "v", "ID": id})
	}
	if isMounted(t, mp) {
		t.Fatal("a stacked mount survived the last Unmount")
	}
}

func TestReconcile(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "gone"})
	mp := e.ok("VolumeDriver.Mount", map[string]any{"Name": "gone", "ID": "a"})["Mountpoint"].(string)
	os.WriteFile(filepath.Join(mp, "f"), []byte("published"), 0o644)
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "gone", "ID": "a"})
	eventually(t, "the final snapshot", func() bool { return e.status("gone")["local"] == "ready" })
	e.stop()
	// A leftover mountpoint of an unmounted volume, a stray one, data
	// without a record, and a record whose data vanished.
	for _, name := range []string{"v", "stray"} {
		os.MkdirAll(filepath.Join(e.root, name), 0o755)
	}
	os.MkdirAll(filepath.Join(e.stateDir, "volumes", "orphan", "data"), 0o755)
	os.WriteFile(filepath.Join(e.stateDir, "volumes", "orphan", "data", "keep"), []byte("x"), 0o644)
	os.RemoveAll(filepath.Join(e.stateDir, "volumes", "gone"))
	e.start(nil)

	if entries, _ := os.ReadDir(e.root); len(entries) != 0 {
		t.Errorf("stale mountpoints kept: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "volumes", "orphan", "data", "keep")); err != nil {
		t.Errorf("data without a record was touched: %v", err)
	}
	if st := e.status("gone"); st["local"] != "absent" || !strings.Contains(st["last_error"].(string), "missing") {
		t.Errorf("volume with missing data: local=%v last_error=%v", st["local"], st["last_error"])
	}
	// The store has the volume's last snapshot: the next Mount restores it.
	mp = e.ok("VolumeDriver.Mount", map[string]any{"Name": "gone", "ID": "b"})["Mountpoint"].(string)
	if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "published" {
		t.Errorf("restored %q, %v", b, err)
	}
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "gone", "ID": "b"})
	// Creating the orphan's name adopts its data.
	e.ok("VolumeDriver.Create", map[string]any{"Name": "orphan"})
	mp = e.ok("VolumeDriver.Mount", map[string]any{"Name": "orphan", "ID": "a"})["Mountpoint"].(string)
	if _, err := os.Stat(filepath.Join(mp, "keep")); err != nil {
		t.Errorf("adopted data not visible: %v", err)
	}
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "orphan", "ID": "a"})
	e.ok("VolumeDriver.Remove", map[string]any{"Name": "gone"})
}

func TestFailedBindCountsNothing(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.stop()
	e.start(&gateMounter{bindErr: errors.New("injected bind failure")})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	if msg := e.fail("VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "a"}); !strings.Contains(msg, "injected bind failure") {
		t.Errorf("Mount error = %q", msg)
	}
	if n := e.mounts("v"); n != 0 {
		t.Errorf("failed Mount left count %d", n)
	}
	e.ok("VolumeDriver.Remove", map[string]any{"Name": "v"})
}

func TestSlowMountBlocksNoReader(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	g := &gateMounter{entered: make(chan string, 1), gate: make(chan struct{})}
	e.stop()
	e.start(g)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "slow"})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "other"})

	done := make(chan error, 1)
	go func() {
		_, out, err := e.call(context.Background(), "VolumeDriver.Mount", map[string]any{"Name": "slow", "ID": "a"})
		if err == nil && out["Err"] != nil {
			err = errors.New(out["Err"].(string))
		}
		done <- err
	}()
	<-g.entered // the Mount of "slow" now holds its volume lock, stuck in Bind

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []struct {
		method string
		body   any
	}{
		{"VolumeDriver.Capabilities", map[string]any{}},
		{"VolumeDriver.List", map[string]any{}},
		{"VolumeDriver.Get", map[string]any{"Name": "other"}},
		{"VolumeDriver.Get", map[string]any{"Name": "slow"}},
		{"VolumeDriver.Path", map[string]any{"Name": "slow"}},
		{"VolumeDriver.Create", map[string]any{"Name": "third"}},
		{"VolumeDriver.Remove", map[string]any{"Name": "third"}},
	} {
		if status, out, err := e.call(ctx, c.method, c.body); err != nil || status != http.StatusOK {
			t.Errorf("%s %v while another Mount is stuck: %d %v %v", c.method, c.body, status, out, err)
		}
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatalf("slow Mount: %v", err)
	}
	e.ok("VolumeDriver.Unmount", map[string]any{"Name": "slow", "ID": "a"})
}

func TestAbandonedMountIsRolledBack(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	g := &gateMounter{entered: make(chan string, 1), gate: make(chan struct{})}
	e.stop()
	e.start(g)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})

	// dockerd gives up (its timeout) and hangs up while Mount is busy.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := e.call(ctx, "VolumeDriver.Mount", map[string]any{"Name": "v", "ID": "a"})
		done <- err
	}()
	mp := <-g.entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client call: %v", err)
	}
	close(g.gate) // the bind now completes, after the caller left

	// The count must not leak: dockerd never sends Unmount for it.
	eventually(t, "the abandoned mount to be undone", func() bool {
		unlock, err := e.d.locks.lock(context.Background(), "v")
		if err != nil {
			return false
		}
		unlock()
		return e.mounts("v") == 0 && !isMounted(t, mp)
	})
	e.ok("VolumeDriver.Remove", map[string]any{"Name": "v"})
}

// The sizes Docker users write all mean binary units and compare equal.
func TestSizeOption(t *testing.T) {
	for in, want := range map[string]string{
		"20G": "20G", "20g": "20G", "20GB": "20G", "20GiB": "20G", "20 gib": "20G",
		"1.5T": "1536G", "512M": "512M", "1048576": "1M", "1073741824b": "1G",
	} {
		got, err := ParseOptions(map[string]string{"size": in})
		if err != nil || got["size"] != want {
			t.Errorf("size=%q: got %q, %v; want %q", in, got["size"], err, want)
		}
	}
	if n := sizeLimit(map[string]string{"size": "256M"}); n != 256<<20 {
		t.Errorf("sizeLimit(256M) = %d", n)
	}
	if got, _ := ParseOptions(nil); got["size"] != "" {
		t.Errorf("no size option became %q: volumes without a limit must compare equal to older ones", got["size"])
	}
}

// A host that keeps volumes in directories cannot enforce a size limit:
// Create says so and creates nothing; inspect says what the copies are.
func TestSizeNeedsBtrfs(t *testing.T) {
	e := newEnv(t)
	msg := e.fail("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"size": "20G"}})
	if !strings.Contains(msg, "option size needs btrfs volumes") || !strings.Contains(msg, "--volume-fs btrfs") {
		t.Errorf("size on a directory host: %q", msg)
	}
	e.fail("VolumeDriver.Get", map[string]any{"Name": "v"})
	e.ok("VolumeDriver.Create", map[string]any{"Name": "w"})
	st := e.status("w")
	if st["filesystem"] != "directory" || st["snapshot_consistency"] != "file-by-file" || st["size_limit_bytes"] != float64(0) {
		t.Errorf("status of a directory volume: %v", st)
	}
	if _, ok := st["used_bytes"]; !ok {
		t.Errorf("status has no used_bytes: %v", st)
	}
}
