package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/worker/dev"
	"github.com/kiln-build/kiln/workflows"
)

func newDevCommand() *cobra.Command {
	var (
		opts    dev.Options
		noDemo  bool
		verbose bool
		delay   int
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run kiln on this machine, with no cluster, and a demo build",
		Long: `Run the whole system on this machine, everything on loopback and kept in
one directory (--dir, default .kiln):

  - a Temporal dev server with its UI (database: <dir>/temporal.db, so a
    restart shows the earlier builds);
  - an S3 server (versitygw) with the staging and release buckets as
    directories under <dir>/s3;
  - a mail sink that stores every notification as <dir>/mail/*.eml and
    prints one line per mail;
  - a kiln worker with the local executor: the pipelines' steps run as
    processes on this machine (their images are ignored), their output in
    <dir>/steps.log (--verbose: also here) and, per step, under <dir>/local;

then a demo build of deploy/dev (embedded in the binary): six flavours of a
Garden Linux 2024 flavors.yaml, each building a real small image tarball
with its checksum and <cname>.release file, staged to S3 with kiln stage,
verified, promoted to objects/<base>/ and recorded in a Garden Linux
release manifest (meta/singles/<base>), tested where the flavour's flags
say so, and a notification into the mail sink. It shows the build's progress, then the
Temporal UI link, the manifest and the mail file, and keeps running until
Ctrl-C, which stops everything it started.

The servers' binaries (temporal, versitygw) are looked up beside the kiln
binary, then in $PATH: make dev builds them into bin/.`,
		Example: `  make dev                                  # builds what is needed, then runs bin/kiln dev
  kiln dev --dir /tmp/kiln --port 17233 --ui-port 18233
  kiln dev --no-demo                        # the stack only; start builds with kiln run

  # from another shell, against a running kiln dev:
  TEMPORAL_ADDRESS=127.0.0.1:7233 kiln run --repo https://github.com/gardenlinux/gardenlinux \
      --branch dev --commit 4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e --version 2.0 --target build --target manifest --wait
  kiln logs build/dev/2.0 --dir .kiln/local`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
				return err
			}
			steps, err := os.OpenFile(filepath.Join(opts.Dir, "steps.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			defer steps.Close()
			opts.StepOutput = steps
			if verbose {
				opts.StepOutput = io.MultiWriter(steps, out)
			}
			logf, err := os.OpenFile(filepath.Join(opts.Dir, "worker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			defer logf.Close()
			opts.Logger = slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
			opts.Out = out
			fmt.Fprintf(out, "kiln dev: starting in %s\n", opts.Dir)
			start := time.Now()
			stack, err := dev.Start(ctx, opts)
			if err != nil {
				return fmt.Errorf("kiln dev: %w", err)
			}
			defer func() {
				fmt.Fprintln(out, "kiln dev: stopping")
				stack.Stop()
				fmt.Fprintln(out, "kiln dev: stopped; nothing it started is running")
			}()
			fmt.Fprintf(out, "kiln dev: ready in %v\n", time.Since(start).Round(time.Millisecond))
			fmt.Fprintf(out, "  Temporal UI  %s\n", stack.UIURL)
			fmt.Fprintf(out, "  Temporal     TEMPORAL_ADDRESS=%s\n", stack.TemporalAddr)
			fmt.Fprintf(out, "  S3           %s (buckets in %s)\n", stack.S3Endpoint, stack.BucketDir)
			fmt.Fprintf(out, "  mail         %s\n", stack.Mail.Dir)
			fmt.Fprintf(out, "  steps        %s (kiln logs BUILD --dir %s)\n", steps.Name(), stack.Config.LocalDir())
			if !noDemo {
				if err := runDemo(ctx, out, stack, delay); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "\nkiln dev keeps running; from another shell:\n"+
				"  export TEMPORAL_ADDRESS=%s\n"+
				"  kiln run --repo https://github.com/gardenlinux/gardenlinux --branch dev --commit 4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e --version 2.0 \\\n"+
				"      --target build --target manifest --target tests --wait\n"+
				"  kiln logs build/dev/2.0 --dir %s\n"+
				"Ctrl-C stops everything.\n", stack.TemporalAddr, stack.Config.LocalDir())
			select {
			case <-ctx.Done():
				return nil
			case err := <-stack.Err():
				return fmt.Errorf("kiln dev: the worker stopped: %w", err)
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", ".kiln", "work directory: database, buckets, mails, runs and logs")
	f.IntVar(&opts.TemporalPort, "port", 7233, "Temporal frontend port")
	f.IntVar(&opts.UIPort, "ui-port", 8233, "Temporal UI port")
	f.BoolVar(&noDemo, "no-demo", false, "start the stack only, without the demo build")
	f.BoolVar(&verbose, "verbose", false, "also print the steps' output here, prefixed [task/step]")
	f.IntVar(&delay, "delay", 0, "seconds each demo image step sleeps, to watch the progress (or cancel it)")
	f.StringVar(&opts.Temporal, "temporal-bin", "", "the temporal CLI binary (default: beside kiln, then $PATH)")
	f.StringVar(&opts.VersityGW, "versitygw-bin", "", "the versitygw binary (default: beside kiln, then $PATH)")
	return cmd
}

// runDemo runs the demo build, showing its progress, and prints where its
// results are.
func runDemo(ctx context.Context, out io.Writer, stack *dev.Stack, delay int) error {
	in := demoRequest(time.Now())
	if delay > 0 {
		in.Params = map[string]string{"delay": fmt.Sprint(delay)}
	}
	run, err := startBuild(ctx, stack.Client, in, workflows.TaskQueue)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\ndemo build %s\n", run.GetID())
	buildErr := follow(ctx, out, stack.Client, run, 300*time.Millisecond)
	if errors.Is(buildErr, context.Canceled) {
		return nil
	}
	fmt.Fprintf(out, "\n  Temporal UI  %s/namespaces/default/workflows/%s\n", stack.UIURL, url.PathEscape(run.GetID()))
	if buildErr != nil {
		fmt.Fprintf(out, "  logs         kiln logs %s --dir %s\n", run.GetID(), stack.Config.LocalDir())
		return buildErr
	}
	p, err := queryProgress(ctx, stack.Client, run.GetID(), run.GetRunID())
	if err != nil {
		return err
	}
	bucket := stack.Config.Storage.ReleaseBucket
	fmt.Fprintf(out, "  manifest     s3://%s/%s\n               %s\n", bucket, p.ManifestSet, stack.ObjectFile(bucket, p.ManifestSet))
	for _, f := range p.Flavours {
		if f.Manifest != "" {
			fmt.Fprintf(out, "               %s (%s)\n", stack.ObjectFile(bucket, f.Manifest), f.Name)
		}
	}
	mail := "none yet (see the build's notification in kiln status)"
	for _, m := range stack.Mail.Mails() {
		if strings.Contains(m.Subject, in.Version) {
			mail = m.File
		}
	}
	fmt.Fprintf(out, "  mail         %s\n", mail)
	return nil
}

// demoRequest is the demo build: this checkout's commit when kiln dev runs
// in a git repository, a fresh version each time, and mail to the sink.
func demoRequest(now time.Time) workflows.BuildRequest {
	in := workflows.BuildRequest{
		Repo: "https://github.com/gardenlinux/gardenlinux", Branch: "dev",
		Commit:     strings.Repeat("0", 40),
		Version:    fmt.Sprintf("dev.%d", now.Unix()),
		FlavourSet: "all",
		Targets:    []workflows.Target{workflows.TargetBuild, workflows.TargetManifest, workflows.TargetTests, workflows.TargetPublish},
		Recipients: workflows.Recipients{Only: []string{"you@kiln.localhost"}},
	}
	if repo, err := git.PlainOpenWithOptions(".", &git.PlainOpenOptions{DetectDotGit: true}); err == nil {
		if head, err := repo.Head(); err == nil {
			in.Commit = head.Hash().String()
		}
	}
	return in
}
