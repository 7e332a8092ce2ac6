package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment twin of a flag: --state-dir → PORTVOL_STATE_DIR.
func envName(flag string) string {
	return "PORTVOL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv makes every flag of c (and its subcommands) take its value from
// the environment twin when the flag is not given on the command line. A
// flag on the command line wins over the environment.
func bindEnv(c *cobra.Command) {
	prev := c.PreRunE
	c.PreRunE = func(cmd *cobra.Command, args []string) error {
		var err error
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if err != nil || f.Changed {
				return
			}
			v, ok := os.LookupEnv(envName(f.Name))
			if !ok {
				return
			}
			if serr := f.Value.Set(v); serr != nil {
				err = usageError{fmt.Errorf("environment variable %s: %w", envName(f.Name), serr)}
			}
		})
		if err != nil {
			return err
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
	for _, sub := range c.Commands() {
		bindEnv(sub)
	}
}
