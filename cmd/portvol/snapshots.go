package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/portvol/portvol/snapshot"
)

func newSnapshotsCmd(stdout io.Writer) *cobra.Command {
	var o snapFlags
	c := &cobra.Command{
		Use:   "snapshots --store URL VOLUME",
		Short: "List the snapshots of VOLUME",
		Long: `List the snapshots of VOLUME, oldest first: ID, start time (local), size of the
files, data stored for them (holes excluded), bytes uploaded by the run that made
it, number of files, the host that made it and its lease generation. The
volume's head (the snapshot the next mount restores) is marked with *.

--json prints an array of objects instead, with stable field names.`,
		Example: `  portvol snapshots --store s3://backups/portvol pg
  portvol snapshots --store s3://backups/portvol pg --json | jq -r '.[-1].id'`,
		Args:              exactArgs("VOLUME"),
		ValidArgsFunction: volumeArgFromStore(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshots(cmd.Context(), &o, args[0], stdout)
		},
	}
	o.register(c.Flags())
	return c
}

// snapshotJSON is one snapshot in the JSON listing. Field names are stable.
type snapshotJSON struct {
	ID            string    `json:"id"`
	Volume        string    `json:"volume"`
	Parent        string    `json:"parent"`
	Head          bool      `json:"head"`
	Host          string    `json:"host"`
	Generation    uint64    `json:"generation"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	Files         uint64    `json:"files"`
	Dirs          uint64    `json:"dirs"`
	Symlinks      uint64    `json:"symlinks"`
	Hardlinks     uint64    `json:"hardlinks"`
	Bytes         uint64    `json:"bytes"`
	DataBytes     uint64    `json:"data_bytes"`
	FilesRead     uint64    `json:"files_read"`
	BytesRead     uint64    `json:"bytes_read"`
	NewBytes      uint64    `json:"new_bytes"`
	UploadedBytes uint64    `json:"uploaded_bytes"`
}

func runSnapshots(ctx context.Context, o *snapFlags, volume string, stdout io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkVolumeArg(volume); err != nil {
		return err
	}
	s, repo, err := o.openRepo(ctx)
	if err != nil {
		return err
	}
	infos, err := repo.List(ctx, volume)
	if err != nil {
		return err
	}
	head := ""
	if len(infos) > 0 {
		head, _ = s.headOf(ctx, volume) // none published yet: nothing is marked
	} else if err := s.checkVolume(ctx, volume); err != nil {
		return err
	}
	if o.json {
		out := make([]snapshotJSON, len(infos))
		for i, in := range infos {
			st := in.Stats
			out[i] = snapshotJSON{
				ID: in.ID, Volume: in.Volume, Parent: in.Parent, Head: in.ID == head, Host: in.Host,
				Generation: in.Generation, Started: in.Started.UTC(), Finished: in.Finished.UTC(),
				Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks, Hardlinks: st.Hardlinks,
				Bytes: st.Bytes, DataBytes: st.DataBytes, FilesRead: st.FilesRead, BytesRead: st.BytesRead,
				NewBytes: st.NewBytes, UploadedBytes: st.UploadedBytes,
			}
		}
		return writeJSON(stdout, out)
	}
	if len(infos) == 0 {
		_, err := fmt.Fprintf(stdout, "volume %q has no snapshots\n", volume)
		return err
	}
	return printSnapshotTable(stdout, infos, head)
}

func printSnapshotTable(w io.Writer, infos []snapshot.Info, head string) error {
	rows := [][]string{{"", "ID", "TIME", "SIZE", "DATA", "UPLOADED", "FILES", "HOST", "GEN"}}
	for _, in := range infos {
		mark := ""
		if in.ID == head {
			mark = "*"
		}
		rows = append(rows, []string{mark, in.ID, in.Started.Local().Format("2006-01-02 15:04:05"),
			humanize.IBytes(in.Stats.Bytes), humanize.IBytes(in.Stats.DataBytes), humanize.IBytes(in.Stats.UploadedBytes),
			strconv.FormatUint(in.Stats.Files, 10), in.Host, strconv.FormatUint(in.Generation, 10)})
	}
	// Text columns align left, numbers right.
	right := []bool{false, false, false, true, true, true, true, false, true}
	width := make([]int, len(right))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		line := make([]string, len(r))
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len(c))
			if right[i] {
				line[i] = pad + c
			} else {
				line[i] = c + pad
			}
		}
		b.WriteString(strings.TrimRight(strings.Join(line, "  "), " ") + "\n")
	}
	if head != "" {
		fmt.Fprintf(&b, "* head: the snapshot the next mount or export restores (%d snapshots)\n", len(infos))
	} else {
		fmt.Fprintf(&b, "(%d snapshots; none is published as the head)\n", len(infos))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
