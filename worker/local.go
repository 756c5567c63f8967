package worker

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
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
