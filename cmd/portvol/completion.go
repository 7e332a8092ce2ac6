package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/driver"
)

// Shell completion is cobra's (portvol completion bash|zsh|fish); these
// complete VOLUME arguments with the names of real volumes: from the store
// for the commands that read it (--store or PORTVOL_STORE), from the
// running plugin for the ownership commands. A completion that cannot ask
// (no store given, no plugin) offers nothing rather than an error.

// completeTimeout bounds a completion's look-up: a shell must not hang.
const completeTimeout = 3 * time.Second

// volumeArgFromStore completes the positional argument at index pos with
// the store's volume names.
func volumeArgFromStore(pos int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) != pos {
			return nil, cobra.ShellCompDirectiveDefault // a directory argument: the shell's own completion
		}
		raw, _ := cmd.Flags().GetString("store")
		if raw == "" {
			raw = os.Getenv(envName("store"))
		}
		if raw == "" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
		defer cancel()
		st, err := openStore(ctx, raw, nil, false) // never creates a store
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := catalog.Names(ctx, st)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// volumeArgFromPlugin completes the first positional argument with the
// volumes the running plugin knows.
func volumeArgFromPlugin(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) != 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	socket, _ := cmd.Flags().GetString("socket")
	if socket == "" {
		socket = os.Getenv(envName("socket"))
	}
	cl, err := newPluginClient(socket)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	var out struct{ Volumes []driver.VolumeStatus }
	if err := cl.call(ctx, driver.AdminStatus, driver.AdminRequest{}, &out); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, v := range out.Volumes {
		names = append(names, v.Name)
	}
	return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
}

func withPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
