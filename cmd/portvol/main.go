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
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the operation failed
	exitUsage = 2 // bad flags or arguments
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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
	fmt.Fprintf(stderr, "portvol: %s\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
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
		Version:       currentVersion().short(),
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
		newImportCmd(stdout, stderr),
		newExportCmd(stdout, stderr),
		newSnapshotsCmd(stdout),
		newVerifyCmd(stdout, stderr),
		newForgetCmd(stdout, stderr),
		newPruneCmd(stdout, stderr),
	)
	for _, c := range root.Commands() {
		bindEnv(c)
	}
	return root
}
