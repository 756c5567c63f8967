package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kiln-build/kiln/activities/builds"
	"github.com/kiln-build/kiln/activities/git"
	"github.com/kiln-build/kiln/activities/local"
	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/activities/packages"
	"github.com/kiln-build/kiln/activities/plan"
	"github.com/kiln-build/kiln/activities/publish"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
)

// RESTConfig returns the Kubernetes client config: cfg.Kubeconfig if set,
// otherwise client-go's standard rules ($KUBECONFIG, ~/.kube/config), then
// the in-cluster config.
func RESTConfig(cfg Config) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = cfg.Kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	// Awaiting is watch-based; these limits are for bursts of creates and
	// cancellations when a large build starts or stops.
	rc.QPS, rc.Burst = 50, 100
	return rc, nil
}

// Run validates cfg, registers kiln's workflows and activities on a worker
// for c, and runs it until ctx ends, then stops gracefully: activities
// awaiting PipelineRuns return at once and the runs keep going; the next
// worker re-attaches to them.
//
// started, if not nil, is called once the worker polls.
func Run(ctx context.Context, cfg Config, c client.Client, rc *rest.Config, logger *slog.Logger, started func()) error {
	p, flavours, err := cfg.Plan()
	if err != nil {
		return fmt.Errorf("invalid config:\n%w", err)
	}
	maxActs := cfg.MaxConcurrentActivities
	if maxActs <= 0 {
		maxActs = 1000
	}
	w := sdkworker.New(c, cfg.TaskQueueName(), sdkworker.Options{
		MaxConcurrentActivityExecutionSize: maxActs,
		WorkerStopTimeout:                  30 * time.Second,
	})
	pl := plan.New(p, flavours)
	registerWorkflows(w, pl)
	s3, err := cfg.S3Client(ctx)
	if err != nil {
		return err
	}
	// Builds check their --packages-version before anything runs, on the
	// shared queue, whichever executor runs the pipelines.
	checks := packages.New(&http.Client{Timeout: 30 * time.Second}, s3)
	w.RegisterActivityWithOptions(checks.CheckPackages, activity.RegisterOptions{Name: workflows.ActivityCheckPackages})
	where := "local"
	if cfg.IsLocal() {
		opts, err := cfg.LocalOptions(logger, s3)
		if err != nil {
			return err
		}
		release, err := lockRoot(opts.Root)
		if err != nil {
			return err
		}
		defer release()
		opts.WorkerQueue = ownQueue(cfg.TaskQueueName(), opts.Root)
		acts, err := local.New(opts)
		if err != nil {
			return err
		}
		// RunPipeline, CancelPipelineRun, ArchiveLogs and WorkerQueue, as
		// the cluster's, on the shared queue and on this worker's own,
		// where workflows send everything that belongs to a run it runs.
		w.RegisterActivity(acts)
		own := sdkworker.New(c, opts.WorkerQueue, sdkworker.Options{
			MaxConcurrentActivityExecutionSize: maxActs,
			WorkerStopTimeout:                  30 * time.Second,
		})
		own.RegisterActivity(acts)
		if err := own.Start(); err != nil {
			return fmt.Errorf("start worker on its own task queue %s: %w", opts.WorkerQueue, err)
		}
		defer own.Stop()
		where = opts.Root
	} else {
		tk, err := versioned.NewForConfig(rc)
		if err != nil {
			return err
		}
		watcher := tekton.NewWatcher(tk, 0)
		defer watcher.Close()
		acts, err := tekton.New(tk, watcher, tekton.Options{
			CancelMode:   pipelinev1.PipelineRunSpecStatus(cfg.CancelMode),
			DashboardURL: cfg.DashboardURL,
		})
		if err != nil {
			return err
		}
		w.RegisterActivity(acts)
		if s3 != nil {
			kube, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			archiver := logs.New(kube, tk, s3, logs.Config{Bucket: cfg.LogBucket(), Prefix: cfg.Storage.Prefix})
			w.RegisterActivityWithOptions(archiver.ArchiveLogs, activity.RegisterOptions{Name: workflows.ActivityArchiveLogs})
		}
		where = rc.Host
	}
	st, err := registerStorage(ctx, w, cfg, s3)
	if err != nil {
		return err
	}
	// What became of an earlier build, for onlyIfChanged schedules: from
	// Temporal, then from the release manifests (none without storage).
	var manifests builds.ManifestFinder
	if st != nil {
		manifests = st
	}
	w.RegisterActivityWithOptions(builds.New(c, manifests, pl.Plan).EarlierBuild, activity.RegisterOptions{Name: workflows.ActivityEarlierBuild})
	notifier, err := cfg.NotifyActivities()
	if err != nil {
		return err
	}
	if notifier != nil {
		w.RegisterActivityWithOptions(notifier.ResolveRecipients, activity.RegisterOptions{Name: workflows.ActivityResolveRecipients})
		w.RegisterActivityWithOptions(notifier.NotifyBuild, activity.RegisterOptions{Name: workflows.ActivityNotifyBuild})
		w.RegisterActivityWithOptions(notifier.NotifyChat, activity.RegisterOptions{Name: workflows.ActivityNotifyChat})
	} else {
		logger.Warn("notifications are off: the config has no notifications.smtp")
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	if started != nil {
		started()
	}
	logger.Info("worker started", "taskQueue", cfg.TaskQueueName(), "namespace", p.Namespace,
		"phases", phaseNames(p), "executor", cmp.Or(cfg.Executor, ExecutorTekton), "runs", where)
	<-ctx.Done()
	logger.Info("worker stopping")
	w.Stop()
	return nil
}

// registerStorage registers the storage and AWS publishing activities that
// cfg configures, and returns the storage activities (nil without
// storage).
func registerStorage(ctx context.Context, w sdkworker.Registry, cfg Config, client *s3.Client) (*storage.Activities, error) {
	if client == nil {
		return nil, nil
	}
	st := storage.New(client, cfg.StorageConfig())
	w.RegisterActivity(st)
	clients, err := cfg.EC2Clients(ctx)
	if err != nil || clients == nil {
		return st, err
	}
	w.RegisterActivity(publish.NewAWS(clients, publish.AWSOptions{PollInterval: cfg.Publishing.AWS.PollInterval.Duration}))
	return st, nil
}

// registerWorkflows registers kiln's workflows and the activities every
// worker has (Plan, ResolveHead) on w.
func registerWorkflows(w sdkworker.Registry, pl *plan.Activities) {
	w.RegisterWorkflowWithOptions(workflows.Build, workflow.RegisterOptions{Name: "Build"})
	w.RegisterWorkflowWithOptions(workflows.FlavourBuild, workflow.RegisterOptions{Name: "FlavourBuild"})
	w.RegisterWorkflowWithOptions(workflows.Scheduled, workflow.RegisterOptions{Name: "Scheduled"})
	w.RegisterWorkflowWithOptions(workflows.Queue, workflow.RegisterOptions{Name: "Queue"})
	w.RegisterWorkflowWithOptions(workflows.CheckBuild, workflow.RegisterOptions{Name: "CheckBuild"})
	w.RegisterWorkflowWithOptions(workflows.PublishFlavour, workflow.RegisterOptions{Name: "PublishFlavour"})
	w.RegisterActivityWithOptions(pl.Plan, activity.RegisterOptions{Name: workflows.ActivityPlan})
	w.RegisterActivityWithOptions(git.Activities{}.ResolveHead, activity.RegisterOptions{Name: workflows.ActivityResolveHead})
}

func phaseNames(p workflows.Plan) []string {
	var out []string
	for _, ph := range []struct {
		n string
		c *workflows.PipelineConfig
	}{{"base", p.Base}, {"packages", p.Packages}, {"image", p.Image}, {"test", p.Test}} {
		if ph.c != nil {
			out = append(out, ph.n)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.Publish)) {
		out = append(out, "publish/"+k)
	}
	return out
}

// NewLogger returns the SDK logger for an slog logger.
func NewLogger(l *slog.Logger) log.Logger { return log.NewStructuredLogger(l) }
