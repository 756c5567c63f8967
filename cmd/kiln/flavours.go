package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/workflows/flavour"
)

func newFlavoursCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flavours",
		Short: "Work with Garden Linux flavour files",
		Example: `  kiln flavours expand -f deploy/flavours.yaml --set all
  kiln flavours expand -f flavors.yaml --publish --category public-cloud`,
	}
	cmd.AddCommand(newFlavoursExpandCommand())
	return cmd
}

// expandOptions are kiln flavours expand's flags.
type expandOptions struct {
	file, set, output       string
	all, noArch, jsonByArch bool
	// sel holds the filter flags; run adds the build-only default.
	sel flavour.Selection
}

func newFlavoursExpandCommand() *cobra.Command {
	var o expandOptions
	expand := &cobra.Command{
		Use:   "expand",
		Short: "Print the flavours a flavour file expands to, filtered like gl-flavors-parse",
		Long: `Print the flavours of a flavour file, sorted by canonical name, one a
line. Both Garden Linux formats are read: the 2021 flavour_sets cross
product (choose a set with --set) and the 2024 flavors.yaml targets list.

Names. A 2024 flavour is named as Garden Linux's gl-flavors-parse names it:
the target, "-" and the features joined by "-" in the file's order (nothing
is sorted), "-" and the arch; then every "--" becomes "-" and every "-_"
becomes "_". Worked example: target aws, features [gardener, _prod,
_trustedboot, _tpm2], arch amd64:
  aws--gardener-_prod-_trustedboot-_tpm2-amd64   ("--" -> "-")
  aws-gardener-_prod-_trustedboot-_tpm2-amd64    ("-_" -> "_")
  aws-gardener_prod_trustedboot_tpm2-amd64
So [_pxe] on metal is metal_pxe-amd64, [_prod, gardener] on aws is
aws_prod-gardener-amd64, and a flavor without features is container-amd64.
A flavor without arch is amd64; a missing flag is false. A 2021 flavour's
name sorts its modifiers: plain ones joined by "-", then the flags
(_prod) appended: aws-gardener_prod-amd64.

Selection, as gl-flavors-parse's options. With no flag filter only
flavours with build: true are printed, as a build would run them; --all
prints every flavour (gl-flavors-parse's default). --build, --test,
--test-platform and --publish each keep only flavours with that flag true,
and combine with AND; giving any of them replaces the build-only default
(--test does not imply --build). --category keeps only targets of the
given categories, --exclude-category drops targets of those; --exclude
drops names matching a wildcard, --include-only keeps only names matching
one. These four may be repeated.
Patterns are shell wildcards on the whole name, arch included (* ? [a-z]
[!a-z]); quote them so the shell leaves them alone. The 2021 format has no
categories.

Output. Names, one a line (-o names, the default); --no-arch strips
"-<arch>" and prints each remaining name once; --json-by-arch prints a JSON
object mapping each arch to its sorted names (with --no-arch, without the
arch); -o json prints a list of objects with "name" and every field of the
flavour.`,
		Example: `  # the flavours a build runs (build: true), 2021 set "all"
  kiln flavours expand -f deploy/flavours.yaml --set all
  # every flavour, whatever its flags
  kiln flavours expand -f flavors.yaml --all
  # flavours with test: true (build is not implied)
  kiln flavours expand -f flavors.yaml --test
  # flavours tested on their platform (test-platform: true)
  kiln flavours expand -f flavors.yaml --test-platform
  # flavours that are both built and published
  kiln flavours expand -f flavors.yaml --build --publish
  # only the public-cloud and baremetal targets
  kiln flavours expand -f flavors.yaml --category public-cloud --category baremetal
  # every target but the containers
  kiln flavours expand -f flavors.yaml --exclude-category container
  # no arm64 flavours
  kiln flavours expand -f flavors.yaml --exclude '*-arm64'
  # only the aws flavours
  kiln flavours expand -f flavors.yaml --include-only 'aws-*'
  # names without the arch, each once: aws-gardener_prod
  kiln flavours expand -f flavors.yaml --no-arch
  # {"amd64": [...], "arm64": [...]}, as gl-flavors-parse --json-by-arch
  kiln flavours expand -f flavors.yaml --publish --json-by-arch
  # every field of each flavour
  kiln flavours expand -f flavors.yaml -o json | jq -r '.[] | select(.category == "baremetal") | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	fs := expand.Flags()
	fs.StringVarP(&o.file, "file", "f", "", "flavour `file`: 2021 flavours.yaml or 2024 flavors.yaml (required)")
	fs.StringVar(&o.set, "set", "all", "flavour `set` (2021 format); the 2024 format has one set, all")
	fs.StringVarP(&o.output, "output", "o", "names", "output `form`: names (one a line) or json (a list of objects)")
	fs.BoolVar(&o.all, "all", false, "print every flavour, whatever its flags (no flag filter)")
	fs.BoolVar(&o.sel.Build, "build", false, "only flavours with build: true (the default when no flag filter is given)")
	fs.BoolVar(&o.sel.Test, "test", false, "only flavours with test: true")
	fs.BoolVar(&o.sel.TestPlatform, "test-platform", false, "only flavours with test-platform: true")
	fs.BoolVar(&o.sel.Publish, "publish", false, "only flavours with publish: true")
	fs.StringArrayVar(&o.sel.Categories, "category", nil, "only targets of this `category` (2024 format; repeatable)")
	fs.StringArrayVar(&o.sel.ExcludeCategories, "exclude-category", nil, "drop targets of this `category` (2024 format; repeatable)")
	fs.StringArrayVar(&o.sel.Exclude, "exclude", nil, "drop flavours whose name matches this wildcard `pattern`, such as '*-arm64' (repeatable)")
	fs.StringArrayVar(&o.sel.IncludeOnly, "include-only", nil, "keep only flavours whose name matches one of these wildcard `pattern`s, such as 'aws-*' (repeatable)")
	fs.BoolVar(&o.noArch, "no-arch", false, "print names without \"-<arch>\", each once")
	fs.BoolVar(&o.jsonByArch, "json-by-arch", false, "print a JSON object: arch -> its sorted names")
	_ = expand.MarkFlagRequired("file")
	return expand
}

func (o *expandOptions) run(cmd *cobra.Command) error {
	flagFilter := o.sel.Build || o.sel.Test || o.sel.TestPlatform || o.sel.Publish
	switch {
	case o.output != "names" && o.output != "json":
		return fmt.Errorf("--output %q: want names or json", o.output)
	case o.all && flagFilter:
		return errors.New("--all prints every flavour, so it does not go with --build, --test, --test-platform or --publish: drop --all, or drop the flag filters")
	case o.jsonByArch && o.output == "json":
		return errors.New("--json-by-arch and -o json are two output forms: give one of them")
	case o.noArch && o.output == "json":
		return errors.New("--no-arch changes names and -o json prints whole flavours with name and arch: drop --no-arch, or use it with names or --json-by-arch")
	}
	data, err := os.ReadFile(o.file)
	if err != nil {
		return fmt.Errorf("--file: %w", err)
	}
	f, err := flavour.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", o.file, err)
	}
	if f.Format == flavour.Format2021 {
		flag := ""
		switch {
		case len(o.sel.Categories) > 0:
			flag = "--category"
		case len(o.sel.ExcludeCategories) > 0:
			flag = "--exclude-category"
		}
		if flag != "" {
			return fmt.Errorf("%s: %s is in the 2021 format (flavour_sets), which has no categories; choose flavours with --set, --include-only or --exclude", flag, o.file)
		}
	}
	fl, err := f.Set(o.set)
	if err != nil {
		if f.Format == flavour.Format2024 {
			return fmt.Errorf("--set %q: the 2024 format has one set, all; drop --set", o.set)
		}
		return fmt.Errorf("--set: %w", err)
	}
	sel := o.sel
	sel.Build = sel.Build || !flagFilter && !o.all // build-only unless told otherwise
	fl, err = flavour.Select(fl, sel)
	if pe := (*flavour.PatternError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("--%w", err) // "--exclude pattern …": names the flag
	} else if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	switch {
	case o.jsonByArch:
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(flavour.ByArch(fl, o.noArch))
	case o.output == "json":
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
	case o.noArch:
		names := make([]string, len(fl))
		for i, x := range fl {
			names[i] = flavour.NoArch(x)
		}
		slices.Sort(names)
		for _, n := range slices.Compact(names) {
			fmt.Fprintln(out, n)
		}
	default:
		for _, x := range fl { // sorted and unique: Parse rejects duplicates
			fmt.Fprintln(out, x.Name())
		}
	}
	return nil
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
		Long: `Check a worker config file (YAML or JSON): every field, the pipeline files
it inlines (valid tekton.dev/v1), the param templates and the flavour file.

The file is read strictly: field names exactly as documented, case
included, each once, each value of its type. Every mistake is reported at
once as file:line:column: field.path: what is wrong, an unknown name with
the nearest known one ("did you mean"). Then what the fields say is
checked, again every problem at once with its field path. KILN_* overrides
apply.`,
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
