package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvol/portvol/driver"
)

// The ownership commands talk to the running plugin (see admin_client.go):
// it holds the store's credentials, the host id, the lease observations
// and the local copies, so every write goes through the same rules as a
// Mount.

const jsonHelp = "print the result as JSON on stdout and progress as JSON lines on stderr"

const socketHelp = "the running portvol's socket (default: /run/docker/plugins/portvol.sock, else the managed plugin's /run/docker/plugins/*/portvol.sock)"

// adminArgs checks the number of arguments, as a usage error.
func adminArgs(lo, hi int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageError{fmt.Errorf("expected %d to %d arguments, got %d", lo, hi, len(args))}
		}
		return nil
	}
}

func newStatusCmd(stdout io.Writer) *cobra.Command {
	var socket string
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [VOLUME]",
		Short: "Show who owns each volume, its latest snapshot and this host's copy",
		Long: `Show, for one volume or every volume in the store: the host that owns it
(holds its lease) or last owned it, the lease generation, the head snapshot and
its age, the state of this host's copy (absent, restoring N%, ready, mounted,
releasing, diverged) and the last error. --json prints a JSON array.`,
		Args:              adminArgs(0, 1),
		ValidArgsFunction: volumeArgFromPlugin,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newPluginClient(socket)
			if err != nil {
				return err
			}
			req := driver.AdminRequest{}
			if len(args) == 1 {
				req.Volume = args[0]
			}
			var out struct{ Volumes []driver.VolumeStatus }
			if err := cl.call(cmd.Context(), driver.AdminStatus, req, &out); err != nil {
				return err
			}
			if out.Volumes == nil {
				out.Volumes = []driver.VolumeStatus{}
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out.Volumes)
			}
			return printStatus(stdout, out.Volumes)
		},
	}
	c.Flags().StringVar(&socket, "socket", "", socketHelp)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func printStatus(w io.Writer, vols []driver.VolumeStatus) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tOWNER\tLEASE\tGEN\tHEAD\tAGE\tLOCAL\tLAST ERROR")
	var notes []string
	for _, v := range vols {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", v.Name, dash(v.Owner), v.Lease, v.Generation,
			dash(v.HeadSnapshot), dash(v.HeadAge), v.Local, dash(oneLine(v.LastError, 60)))
		if v.TakenOver != "" {
			notes = append(notes, v.Name+": "+v.TakenOver)
		}
		for _, k := range v.KeptCopies {
			notes = append(notes, v.Name+": copy kept at "+k)
		}
		if v.Store != "ok" {
			notes = append(notes, v.Name+": store "+v.Store)
		}
		if len(v.LastError) > 60 {
			notes = append(notes, v.Name+": "+v.LastError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

// runAdmin sends one admin request (op) to the plugin at socket and
// prints the result's message to stdout, or with asJSON the result as one
// JSON object with "seconds" added. With progress set the operation
// streams progress, shown there as import and export show theirs.
func runAdmin(ctx context.Context, socket, path, op string, req driver.AdminRequest, asJSON bool, stdout, progress io.Writer) error {
	cl, err := newPluginClient(socket)
	if err != nil {
		return err
	}
	start := time.Now()
	// Every admin result (TakeoverResult, PullResult, UndeleteResult)
	// carries its summary in "message".
	var out struct{ Result map[string]any }
	if progress != nil {
		rep := newReporter(progress, asJSON, op, req.Volume)
		err = cl.stream(ctx, path, req, func(l progressLine) {
			if l.Restore != nil {
				rep.update(*l.Restore)
			} else {
				rep.message(*l.Progress)
			}
		}, &out)
		rep.done()
	} else {
		err = cl.call(ctx, path, req, &out)
	}
	if err != nil {
		return err
	}
	if asJSON {
		res := out.Result
		if res == nil {
			res = map[string]any{}
		}
		res["seconds"] = round3(time.Since(start).Seconds())
		return writeJSON(stdout, res)
	}
	msg, _ := out.Result["message"].(string)
	_, err = fmt.Fprintln(stdout, msg)
	return err
}

func newTakeoverCmd(stdout, stderr io.Writer) *cobra.Command {
	var socket string
	var force, asJSON bool
	c := &cobra.Command{
		Use:   "takeover VOLUME",
		Short: "Take a volume over from a host that is gone",
		Long: `Take VOLUME over from the host holding it, once that host has stopped renewing
its lease: this host must see the lease unchanged for a full TTL, and watches it
for that long if it has not yet. The generation goes up, so the old host can
never publish again, and the lease is released: the next Mount (here or on any
host) restores the last published snapshot. Whatever the old host wrote after
that snapshot is lost. --force takes a live lease at once: only for a host you
know is dead.`,
		Args:              adminArgs(1, 1),
		ValidArgsFunction: volumeArgFromPlugin,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd.Context(), socket, driver.AdminTakeover, "takeover", driver.AdminRequest{Volume: args[0], Force: force}, asJSON, stdout, stderr)
		},
	}
	c.Flags().StringVar(&socket, "socket", "", socketHelp)
	c.Flags().BoolVar(&force, "force", false, "take the volume even while its lease is live (its holder's later writes are lost)")
	c.Flags().BoolVar(&asJSON, "json", false, jsonHelp)
	return c
}

func newPullCmd(stdout, stderr io.Writer) *cobra.Command {
	var socket string
	var asJSON, follow bool
	var interval time.Duration
	c := &cobra.Command{
		Use:   "pull VOLUME",
		Short: "Bring this host's copy of a volume to its latest snapshot, ahead of a move",
		Long: `Restore VOLUME's latest published snapshot into this host's copy without taking
ownership, so that a later Mount here fetches only what changed since. A host
that keeps an older copy fetches only the chunks it lacks. Refused while the
volume is mounted here. Interrupting the command leaves the pull running.

With --follow the plugin keeps this host's copy within one snapshot of the head
while another host owns the volume: it reads the head every --interval and
pulls each new snapshot, printing a line for each. A planned move here then
waits only for the last delta. It stops, with exit code 0, on Ctrl-C (a pull
that is running finishes in the plugin) or when this host comes to own the
volume (a container here mounted it).`,
		Args:              adminArgs(1, 1),
		ValidArgsFunction: volumeArgFromPlugin,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !follow {
				if cmd.Flags().Changed("interval") {
					return usageError{errors.New("--interval is for --follow")}
				}
				return runAdmin(cmd.Context(), socket, driver.AdminPull, "pull", driver.AdminRequest{Volume: args[0]}, asJSON, stdout, stderr)
			}
			if interval < 100*time.Millisecond {
				return usageError{fmt.Errorf("--interval %v: at least 100ms (how often the head is read)", interval)}
			}
			return runFollow(cmd.Context(), socket, args[0], interval, asJSON, stdout, stderr)
		},
	}
	c.Flags().StringVar(&socket, "socket", "", socketHelp)
	c.Flags().BoolVar(&asJSON, "json", false, jsonHelp)
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep pulling each new snapshot until Ctrl-C or until this host owns the volume")
	c.Flags().DurationVar(&interval, "interval", driver.DefaultFollowInterval, "with --follow: how often to read the volume's head")
	return c
}

// runFollow streams a follow: each pull that changed the copy is a line
// on stdout (with asJSON its PullResult as a JSON object), restore
// progress goes to stderr. Ctrl-C ends it with a nil error.
func runFollow(ctx context.Context, socket, volume string, interval time.Duration, asJSON bool, stdout, stderr io.Writer) error {
	cl, err := newPluginClient(socket)
	if err != nil {
		return err
	}
	rep := newReporter(stderr, asJSON, "pull", volume)
	last := ""
	var out struct{ Result map[string]any }
	err = cl.stream(ctx, driver.AdminFollow, driver.AdminRequest{Volume: volume, Interval: interval}, func(l progressLine) {
		switch {
		case l.Pulled != nil:
			rep.done()
			last = l.Pulled.Snapshot
			if asJSON {
				_ = writeJSON(stdout, l.Pulled)
			} else {
				fmt.Fprintln(stdout, l.Pulled.Message)
			}
		case l.Restore != nil:
			rep.update(*l.Restore)
		default:
			rep.message(*l.Progress)
		}
	}, &out)
	rep.done()
	if err != nil && ctx.Err() != nil {
		msg := fmt.Sprintf("stopped following volume %s; this host's copy holds snapshot %s (a pull that was running finishes in the plugin)", volume, dash(last))
		if asJSON {
			return writeJSON(stdout, map[string]any{"volume": volume, "snapshot": last, "message": msg, "stopped": true})
		}
		_, err = fmt.Fprintln(stdout, msg)
		return err
	}
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, out.Result)
	}
	msg, _ := out.Result["message"].(string)
	_, err = fmt.Fprintln(stdout, msg)
	return err
}

func newUndeleteCmd(stdout io.Writer) *cobra.Command {
	var socket string
	var asJSON bool
	c := &cobra.Command{
		Use:   "undelete VOLUME",
		Short: "Bring a removed volume back from the store's trash",
		Long: `Bring back the most recently removed volume of this name, with its snapshots,
from the store's trash (volumes stay there for --trash-retention). Refused if a
volume of that name exists.`,
		Args:              adminArgs(1, 1),
		ValidArgsFunction: volumeArgFromPlugin,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd.Context(), socket, driver.AdminUndelete, "undelete", driver.AdminRequest{Volume: args[0]}, asJSON, stdout, nil)
		},
	}
	c.Flags().StringVar(&socket, "socket", "", socketHelp)
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}

func newConvertCmd(stdout io.Writer) *cobra.Command {
	var socket string
	var asJSON bool
	c := &cobra.Command{
		Use:   "convert VOLUME",
		Short: "Move a directory volume's copy on this host into a btrfs subvolume",
		Long: `Move this host's copy of VOLUME, kept in a plain directory (made before portvol
kept volumes in btrfs subvolumes, or with --volume-fs directory), into a btrfs
subvolume, keeping owners, modes, times, extended attributes, hard links and
holes. From then on its periodic snapshots are read from one instant of the
whole volume (point-in-time) instead of file by file. Refused while the volume
is mounted on this host. Directory volumes also move into a subvolume by
themselves at their next restore.`,
		Args:              adminArgs(1, 1),
		ValidArgsFunction: volumeArgFromPlugin,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd.Context(), socket, driver.AdminConvert, "convert", driver.AdminRequest{Volume: args[0]}, asJSON, stdout, nil)
		},
	}
	c.Flags().StringVar(&socket, "socket", "", socketHelp)
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
