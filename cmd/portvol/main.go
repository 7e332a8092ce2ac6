// Command portvol is the portvol volume plugin (portvol serve) and the
// command line that drives snapshots and ownership without Docker.
//
// This is the only package that reads flags or the environment and knows
// concrete stores; everything below it takes typed options.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the commands wind down (import releases its
	// lease); a second one ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(ctx, err)
	if code == exitInterrupted {
		fmt.Fprintf(stderr, "portvol: interrupted: %s\n", err)
	} else {
		fmt.Fprintf(stderr, "portvol: %s\n", err)
	}
	return code
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "portvol",
		Short: "Portable Docker volumes: snapshots in object storage, one owner at a time",
		Long: `portvol is a Docker volume plugin that makes stateful volumes portable between
hosts. Every flag can also be set through an environment variable: --state-dir
is PORTVOL_STATE_DIR, --store is PORTVOL_STORE, and so on.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// An unknown command is a usage error (cobra's own error is not).
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q; see portvol --help", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg = fmt.Sprintf("unknown command %q; did you mean %s?", args[0], strings.Join(s, " or "))
			}
			return usageError{errors.New(msg)}
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		// Typos within two edits get a suggestion.
		SuggestionsMinimumDistance: 2,
		Version:                    currentVersion().short(),
	}
	root.SetVersionTemplate("portvol {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newVersionCmd(stdout),
		newServeCmd(stdout),
		newInitCmd(stdout),
		newStatusCmd(stdout),
		newTakeoverCmd(stdout, stderr),
		newPullCmd(stdout, stderr),
		newUndeleteCmd(stdout),
		newConvertCmd(stdout),
		newImportCmd(stdout, stderr),
		newExportCmd(stdout, stderr),
		newSnapshotsCmd(stdout),
		newVerifyCmd(stdout, stderr),
		newVolumesCmd(stdout, stderr),
		newForgetCmd(stdout, stderr),
		newPruneCmd(stdout, stderr),
	)
	for _, c := range root.Commands() {
		bindEnv(c)
	}
	return root
}
