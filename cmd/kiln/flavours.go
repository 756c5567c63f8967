package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/workflows/flavour"
)

func newFlavoursCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "flavours",
		Short:   "Work with Garden Linux flavour files",
		Example: "  kiln flavours expand -f deploy/flavours.yaml --set all",
	}
	var file, set, output string
	var all bool
	expand := &cobra.Command{
		Use:   "expand",
		Short: "Print the flavours a flavour file expands to",
		Long: `Print the flavours of one set of a flavour file, sorted by canonical
name. Both Garden Linux formats are read: the 2021 flavour_sets cross
product and the 2024 targets list. By default only flavours with the build
flag are printed, as a build would run them.`,
		Example: `  kiln flavours expand -f deploy/flavours.yaml --set all
  kiln flavours expand -f flavors.yaml -o json | jq -r '.[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			f, err := flavour.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			fl, err := f.Set(set)
			if err != nil {
				return err
			}
			if !all {
				fl = flavour.Buildable(fl)
			}
			out := cmd.OutOrStdout()
			switch output {
			case "names":
				for _, x := range fl {
					fmt.Fprintln(out, x.Name())
				}
				return nil
			case "json":
				type named struct {
					Name string `json:"name"`
					flavour.Flavour
				}
				list := make([]named, len(fl))
				for i, x := range fl {
					list[i] = named{x.Name(), x}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			return fmt.Errorf("--output %q: want names or json", output)
		},
	}
	expand.Flags().StringVarP(&file, "file", "f", "", "flavour file (required)")
	expand.Flags().StringVar(&set, "set", "all", "flavour set (2021 format); the 2024 format has one set, all")
	expand.Flags().StringVarP(&output, "output", "o", "names", "names or json")
	expand.Flags().BoolVar(&all, "all", false, "also print flavours whose build flag is off")
	_ = expand.MarkFlagRequired("file")
	cmd.AddCommand(expand)
	return cmd
}

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "config",
		Short:   "Work with the worker's config file",
		Example: "  kiln config validate -c deploy/kiln.yaml",
	}
	var path string
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check a worker config file and the files it names",
		Long: `Check a worker config file: every field, the pipeline files it inlines
(valid tekton.dev/v1), the param templates and the flavour file. Every
problem is reported at once, with its field path. KILN_* overrides apply.`,
		Example: `  kiln config validate -c deploy/kiln.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := worker.LoadConfig(path, os.Getenv)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid\n", path)
			return nil
		},
	}
	validate.Flags().StringVarP(&path, "config", "c", "kiln.yaml", "worker config file")
	cmd.AddCommand(validate)
	return cmd
}
