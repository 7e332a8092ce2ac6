package main

import (
	"strings"
	"testing"
)

func TestVolumeFSFlags(t *testing.T) {
	good := []struct {
		fs, size string
		bytes    int64
	}{
		{"auto", "", 0}, {"BTRFS", "200G", 200 << 30}, {"directory", "512MiB", 512 << 20}, {" btrfs ", "1.5T", 3 << 39},
	}
	for _, c := range good {
		o := serveOptions{volumeFS: c.fs, poolSize: c.size}
		if err := o.checkVolumeFSFlags(); err != nil || o.poolSizeBytes != c.bytes {
			t.Errorf("--volume-fs %q --pool-size %q: %v, %d bytes", c.fs, c.size, err, o.poolSizeBytes)
		}
	}
	bad := []struct{ fs, size, want string }{
		{"zfs", "", "use auto, btrfs or directory"},
		{"btrfs", "20X", "unknown unit"},
		{"btrfs", "100M", "at least 256M"},
		{"auto", "-1G", "--pool-size"},
	}
	for _, c := range bad {
		o := serveOptions{volumeFS: c.fs, poolSize: c.size}
		if err := o.checkVolumeFSFlags(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--volume-fs %q --pool-size %q: %v, want an error saying %q", c.fs, c.size, err, c.want)
		}
	}
	if fs, why, err := resolveVolumeFS("directory"); err != nil || fs != "directory" || why == "" {
		t.Errorf("resolveVolumeFS(directory) = %s, %s, %v", fs, why, err)
	}
	if fs, _, err := resolveVolumeFS("auto"); err != nil || (fs != "btrfs" && fs != "directory") {
		t.Errorf("resolveVolumeFS(auto) = %s, %v", fs, err)
	}
}
