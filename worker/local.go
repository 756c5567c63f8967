package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-build/kiln/activities/local"
	"github.com/kiln-build/kiln/workflows"
)

// LocalOptions returns the local runner's options: its directory, the
// Pipelines and Tasks from the config's files, and, with storage, where
// ArchiveLogs puts the logs.
func (c Config) LocalOptions(logger *slog.Logger, client *s3.Client) (local.Options, error) {
	opts := local.Options{Root: c.LocalDir(), Logger: logger, Log: c.StepOutput}
	if l := c.Local; l != nil {
		opts.MaxParallel = l.MaxParallel
		opts.Isolation = l.Isolation
		for i, p := range l.Pipelines {
			files, err := yamlFiles(c.path(p))
			if err != nil {
				return opts, fmt.Errorf("local.pipelines[%d]: %w", i, err)
			}
			for _, f := range files {
				objs, err := decodeFile(f)
				if err != nil {
					return opts, fmt.Errorf("local.pipelines[%d]: %w", i, err)
				}
				opts = objs.Options(opts)
			}
		}
	}
	if client != nil {
		opts.Archive = &local.Archive{Client: client, Bucket: c.LogBucket(), Prefix: c.Storage.Prefix}
	}
	return opts, nil
}

// yamlFiles is path itself, or the .yaml and .yml files in the directory
// path, sorted.
func yamlFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	return out, nil
}

func decodeFile(path string) (local.Objects, error) {
	f, err := os.Open(path)
	if err != nil {
		return local.Objects{}, err
	}
	defer f.Close()
	objs, err := local.Decode(f)
	if err != nil {
		return objs, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}

// checkLocal checks every phase's pipeline as the local runner would run
// it, so that a feature it does not support is reported by kiln config
// validate and at the worker's start, not halfway through a build.
func (c Config) checkLocal(p workflows.Plan, opts local.Options) []error {
	type phase struct {
		path string
		cfg  *workflows.PipelineConfig
	}
	phases := []phase{{"phases.base", p.Base}, {"phases.packages", p.Packages}, {"phases.image", p.Image}, {"phases.test", p.Test}, {"phases.testPlatform", p.TestPlatform}}
	for _, platform := range slices.Sorted(maps.Keys(p.Publish)) {
		cfg := p.Publish[platform]
		phases = append(phases, phase{"phases.publish." + platform, &cfg})
	}
	var errs []error
	for _, ph := range phases {
		if ph.cfg == nil {
			continue
		}
		pr := &pipelinev1.PipelineRun{
			ObjectMeta: metav1.ObjectMeta{Name: "kiln-config-check", Namespace: p.Namespace},
			Spec: pipelinev1.PipelineRunSpec{
				PipelineSpec: ph.cfg.PipelineSpec, Params: ph.cfg.SampleParams(), Workspaces: ph.cfg.Workspaces,
			},
		}
		if ph.cfg.PipelineRef != "" {
			pr.Spec.PipelineRef = &pipelinev1.PipelineRef{Name: ph.cfg.PipelineRef}
		}
		if err := local.Check(context.Background(), opts, pr); err != nil {
			errs = append(errs, fmt.Errorf("%s: the local executor cannot run it: %w", ph.path, err))
		}
	}
	return errs
}

// ownQueue is the task queue that only the local worker with this root
// polls: its host name and root, so that a worker restarted on the same
// machine and root serves its predecessor's runs (and finds what they
// left), while two workers never share one (lockRoot).
func ownQueue(queue, root string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return queue + "@" + host + ":" + root
}

// lockRoot takes the local executor's root for this worker, refusing one
// that another live worker uses: their runs, locks and task queue would
// mix. The kernel releases the lock when the process dies.
func lockRoot(root string) (release func(), err error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("local.dir: %w", err)
	}
	path := filepath.Join(root, "worker.lock")
	f, err := local.LockFile(path)
	if errors.Is(err, local.ErrBusy) {
		b, _ := os.ReadFile(path)
		return nil, fmt.Errorf("local.dir: %s is in use by another worker (pid %s); give each local worker its own directory", root, strings.TrimSpace(string(b)))
	}
	if err != nil {
		return nil, fmt.Errorf("local.dir: lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
