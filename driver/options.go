package driver

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/prune"
)

// Option names accepted by Create (-o NAME=VALUE).
const (
	// OptSnapshotInterval: how often a mounted volume is snapshotted to the
	// store; a Go duration (30s, 5m, 1h), 0 turns periodic snapshots off.
	OptSnapshotInterval = "snapshot_interval"
	// OptTakeover: what happens when another host's lease on the volume has
	// expired: "manual" (portvol takeover) or "auto".
	OptTakeover = "takeover"
	// OptStandby: hosts (comma-separated host ids) whose plugins keep their
	// copy within one snapshot of the head while another host owns the
	// volume (see standby.go). No default: no standby hosts.
	OptStandby = "standby"
	// OptSize: the volume's size limit (20G, 512M, 1.5T, 20GiB, ...; every
	// unit is binary, as in Docker's own size options). Enforced on btrfs
	// volumes by a quota group: a writer past it gets EDQUOT ("Disk quota
	// exceeded"). Not set: no limit. It cannot be changed once the volume
	// exists.
	OptSize = "size"
	// keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly: the
	// retention policy applied after each publish (package prune). Not
	// set: prune.DefaultPolicy. All 0: keep every snapshot.
)

// Option defaults, filled in by ParseOptions.
const (
	DefaultSnapshotInterval = 5 * time.Minute
	DefaultTakeover         = "manual"
)

// minSnapshotInterval keeps a typo like 5ms from hammering the store.
const minSnapshotInterval = time.Second

type optionSpec struct {
	syntax string
	def    string
	parse  func(string) (string, error) // returns the normalised value
}

var optionSpecs = map[string]optionSpec{
	OptSnapshotInterval: {
		syntax: "a duration such as 30s, 5m or 1h; 0 turns periodic snapshots off",
		def:    DefaultSnapshotInterval.String(),
		parse: func(s string) (string, error) {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				return "", errors.New("not a duration")
			case d < 0:
				return "", errors.New("negative")
			case d > 0 && d < minSnapshotInterval:
				return "", fmt.Errorf("too short: use 0 or at least %s", minSnapshotInterval)
			}
			return d.String(), nil
		},
	},
	OptTakeover: {
		syntax: `"manual" or "auto"`,
		def:    DefaultTakeover,
		parse: func(s string) (string, error) {
			switch v := strings.ToLower(s); v {
			case "manual", "auto":
				return v, nil
			}
			return "", errors.New("unknown mode")
		},
	},
}

// keepSpec is the spec of a keep_* option: no default is filled in (a
// volume without any keep_* option gets prune.DefaultPolicy, and volumes
// created before these options existed compare equal to new ones).
var keepSpec = optionSpec{
	syntax: "a whole number from 0 to 100000",
	parse: func(s string) (string, error) {
		_, _, err := prune.ParseOptions(map[string]string{"keep_last": s})
		if err != nil {
			return "", errors.New("not a count")
		}
		n, _ := strconv.Atoi(s)
		return strconv.Itoa(n), nil
	},
}

// standbySpec is the spec of the standby option; like keep_*, no default
// is filled in.
var standbySpec = optionSpec{
	syntax: "host ids separated by commas, such as hostB,hostC",
	parse: func(s string) (string, error) {
		hosts := strings.Split(s, ",")
		for i, h := range hosts {
			hosts[i] = strings.TrimSpace(h)
			if err := lease.CheckHost(hosts[i]); err != nil {
				return "", err
			}
		}
		sort.Strings(hosts)
		return strings.Join(slices.Compact(hosts), ","), nil
	},
}

// sizeSpec is the spec of the size option: no default is filled in (a
// volume without it has no limit, and volumes created before the option
// existed compare equal to new ones without it). Values are normalised to
// the largest binary unit that divides them (20GiB, 20GB → 20G).
var sizeSpec = optionSpec{
	syntax: "a size such as 20G, 512M or 1.5T (binary units; at least 1M)",
	parse: func(s string) (string, error) {
		n, err := localcopy.ParseSizeLimit(s)
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("size %q: ", s))
			return "", errors.New(strings.TrimPrefix(msg, localcopy.ErrInvalid.Error()+": "))
		}
		return localcopy.FormatSize(n), nil
	},
}

// sizeLimit is the size limit in bytes that normalised options ask for,
// 0 for none.
func sizeLimit(opts map[string]string) int64 {
	v, ok := opts[OptSize]
	if !ok || v == "" {
		return 0
	}
	n, err := localcopy.ParseSize(v)
	if err != nil {
		return 0
	}
	return n
}

func specFor(k string) (optionSpec, bool) {
	if spec, ok := optionSpecs[k]; ok {
		return spec, true
	}
	if k == OptStandby {
		return standbySpec, true
	}
	if k == OptSize {
		return sizeSpec, true
	}
	for _, n := range prune.OptionNames {
		if k == n {
			return keepSpec, true
		}
	}
	return optionSpec{}, false
}

// OptionNames lists the valid option names, sorted.
func OptionNames() []string {
	names := make([]string, 0, len(optionSpecs))
	for n := range optionSpecs {
		names = append(names, n)
	}
	names = append(names, prune.OptionNames...)
	names = append(names, OptStandby)
	names = append(names, OptSize)
	sort.Strings(names)
	return names
}

// ParseOptions checks Create's options and returns them normalised with
// defaults filled in, so that two option sets that mean the same compare
// equal. Errors name the option and, for unknown ones, list the valid names.
// Values are quoted in errors: no option carries a secret.
func ParseOptions(raw map[string]string) (map[string]string, error) {
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same error for the same input
	out := map[string]string{}
	for _, k := range keys {
		spec, ok := specFor(k)
		if !ok {
			return nil, errorf(ErrInvalid, "unknown option %q: valid options are: %s", k, strings.Join(OptionNames(), ", "))
		}
		v, err := spec.parse(strings.TrimSpace(raw[k]))
		if err != nil {
			return nil, errorf(ErrInvalid, "invalid value %q for option %s: %s (expected %s)", raw[k], k, err, spec.syntax)
		}
		out[k] = v
	}
	for k, spec := range optionSpecs {
		if _, ok := out[k]; !ok {
			out[k] = spec.def
		}
	}
	return out, nil
}

// diffOptions describes how have differs from want, for error messages.
func diffOptions(have, want map[string]string) string {
	var diffs []string
	for _, k := range OptionNames() {
		if have[k] != want[k] {
			diffs = append(diffs, fmt.Sprintf("%s is %q, not %q", k, have[k], want[k]))
		}
	}
	return strings.Join(diffs, ", ")
}
