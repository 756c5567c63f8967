package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/worker/webhook"
	"github.com/kiln-build/kiln/workflows"
)

func newWebhookCommand(logger *slog.Logger) *cobra.Command {
	var (
		listen, secretFile, secretEnv, taskQueue string
		branches, tags, targets                  []string
		flavourSet                               string
		maxBody                                  int64
	)
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Receive GitHub push and tag events and queue builds",
		Long: `Serve GitHub webhooks: a push to a branch matching --branch, or a tag
matching --tag, queues a build of the pushed commit on the branch's (or
tag's) queue, as kiln trigger does. A tag builds as that version.

Every delivery's X-Hub-Signature-256 is checked (HMAC-SHA256, constant-time)
with the secret from --secret-file or the environment variable named by
--secret-env; the secret is never logged. Answers: 202 with the workflow ID;
204 for ignored events (ping, other refs, deletions); 400 malformed; 401 bad
or missing signature; 413 body too large; 503 Temporal unreachable.

In GitHub: Settings, Webhooks, content type application/json, the same
secret, "Just the push event".` + temporalEnvHelp,
		Example: `  KILN_WEBHOOK_SECRET=... kiln webhook --listen :8090 --branch main --branch 'rel-*' --tag '[0-9]*'
  kiln webhook --secret-file /etc/kiln/webhook-secret --flavour-set all --target build --target tests`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret, err := readSecret(secretFile, secretEnv)
			if err != nil {
				return err
			}
			h := &webhook.Handler{
				Secret: secret, Branches: branches, Tags: tags, MaxBody: maxBody,
				Template: workflows.BuildRequest{FlavourSet: flavourSet},
				Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
			}
			h.Template.Targets = targetsOf(targets)
			if err := workflows.ValidateTargets(h.Template.Targets); err != nil {
				return err
			}
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			h.Starter = webhook.QueueStarter{Client: c, TaskQueue: taskQueue}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			h.Logger.Info("webhook listening", "addr", ln.Addr().String(), "branches", branches, "tags", tags)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":8090", "address to serve on")
	f.StringVar(&secretFile, "secret-file", "", "file holding the webhook secret")
	f.StringVar(&secretEnv, "secret-env", "KILN_WEBHOOK_SECRET", "environment variable holding the secret, if no --secret-file")
	f.StringArrayVar(&branches, "branch", []string{"main"}, "branch pattern to build, repeatable (path.Match syntax)")
	f.StringArrayVar(&tags, "tag", nil, "tag pattern to build, repeatable")
	f.StringVar(&flavourSet, "flavour-set", "all", "flavour set of the builds")
	f.StringArrayVar(&targets, "target", nil, "build target, repeatable (default build)")
	f.StringVar(&taskQueue, "task-queue", workflows.TaskQueue, "task queue of the workers")
	f.Int64Var(&maxBody, "max-body", 1<<20, "largest body accepted, in bytes")
	return cmd
}

// readSecret reads the webhook secret from a file or an environment
// variable, and refuses an empty one.
func readSecret(file, env string) ([]byte, error) {
	var s string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--secret-file: %w", err)
		}
		s = string(b)
	case env != "":
		s = os.Getenv(env)
	}
	s = strings.TrimRight(s, "\r\n")
	if s == "" {
		return nil, fmt.Errorf("no webhook secret: set --secret-file, or the environment variable %s", env)
	}
	return []byte(s), nil
}
