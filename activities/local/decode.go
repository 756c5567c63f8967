package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Objects are the objects the local runner uses, as read from YAML or
// JSON files: Pipelines, Tasks, ConfigMaps and Secrets to give to the
// Runner (Options), and PipelineRuns to run.
type Objects struct {
	PipelineRuns []pipelinev1.PipelineRun
	Pipelines    []pipelinev1.Pipeline
	Tasks        []pipelinev1.Task
	ConfigMaps   []corev1.ConfigMap
	Secrets      []corev1.Secret
	// Other lists the documents of other kinds, which the runner has no
	// use for, as "apiVersion/kind name".
	Other []string
}

// Decode reads every document of a YAML (multi-document) or JSON stream.
// Tekton objects must be tekton.dev/v1, and a field the v1 types do not
// know is an error rather than silently dropped.
func Decode(r io.Reader) (Objects, error) {
	var objs Objects
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for i := 0; ; i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return objs, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		if err := objs.add(raw); err != nil {
			return objs, fmt.Errorf("document %d: %w", i, err)
		}
	}
}

func (o *Objects) add(raw []byte) error {
	var meta struct {
		metav1.TypeMeta
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return err
	}
	strict := func(v any) error {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			return fmt.Errorf("%s %q: %w", meta.Kind, meta.Metadata.Name, err)
		}
		return nil
	}
	gv := meta.APIVersion
	switch {
	case gv == "tekton.dev/v1" && meta.Kind == "PipelineRun":
		var v pipelinev1.PipelineRun
		if err := strict(&v); err != nil {
			return err
		}
		o.PipelineRuns = append(o.PipelineRuns, v)
	case gv == "tekton.dev/v1" && meta.Kind == "Pipeline":
		var v pipelinev1.Pipeline
		if err := strict(&v); err != nil {
			return err
		}
		o.Pipelines = append(o.Pipelines, v)
	case gv == "tekton.dev/v1" && meta.Kind == "Task":
		var v pipelinev1.Task
		if err := strict(&v); err != nil {
			return err
		}
		o.Tasks = append(o.Tasks, v)
	case (gv == "tekton.dev/v1beta1" || gv == "tekton.dev/v1alpha1") && (meta.Kind == "PipelineRun" || meta.Kind == "Pipeline" || meta.Kind == "Task"):
		return fmt.Errorf("%s %q: %s is not supported by the local runner; use tekton.dev/v1", meta.Kind, meta.Metadata.Name, gv)
	case gv == "v1" && meta.Kind == "ConfigMap":
		var v corev1.ConfigMap
		if err := strict(&v); err != nil {
			return err
		}
		o.ConfigMaps = append(o.ConfigMaps, v)
	case gv == "v1" && meta.Kind == "Secret":
		var v corev1.Secret
		if err := strict(&v); err != nil {
			return err
		}
		o.Secrets = append(o.Secrets, v)
	default:
		name := meta.Metadata.Name
		if name == "" {
			name = meta.Metadata.GenerateName
		}
		o.Other = append(o.Other, fmt.Sprintf("%s/%s %s", gv, meta.Kind, name))
	}
	return nil
}

// Options returns opts with the Pipelines, Tasks, ConfigMaps and Secrets
// of o added.
func (o Objects) Options(opts Options) Options {
	opts.Pipelines = append(opts.Pipelines, o.Pipelines...)
	opts.Tasks = append(opts.Tasks, o.Tasks...)
	opts.ConfigMaps = append(opts.ConfigMaps, o.ConfigMaps...)
	opts.Secrets = append(opts.Secrets, o.Secrets...)
	return opts
}
