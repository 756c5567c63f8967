package worker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/kiln-build/kiln/workflows/flavour"
)

// TestDeployFilesAreValid decodes every YAML file under deploy/ into its
// typed object, strictly: Kubernetes objects through client-go's scheme,
// Tekton objects through Tekton's own types and Validate, and kiln's own
// files through their loaders.
func TestDeployFilesAreValid(t *testing.T) {
	kube := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true, Strict: true})
	n := 0
	err := filepath.WalkDir("../deploy", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		n++
		t.Run(strings.TrimPrefix(path, "../"), func(t *testing.T) {
			switch filepath.Base(path) {
			case "kiln.yaml":
				c, err := LoadConfig(path, func(string) string { return "" })
				if err == nil {
					err = c.Validate()
				}
				if err != nil {
					t.Fatal(err)
				}
				return
			case "flavours.yaml":
				data, _ := os.ReadFile(path)
				if _, err := flavour.Parse(data); err != nil {
					t.Fatal(err)
				}
				return
			case "schedules.yaml":
				return // cmd/kiln's TestExampleSchedulesAreValid loads it
			case "kustomization.yaml":
				checkKustomization(t, path)
				return
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r := utilyaml.NewYAMLReader(bufio.NewReader(f))
			for {
				doc, err := r.Read()
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var head struct{ APIVersion, Kind string }
				if err := yaml.Unmarshal(doc, &head); err != nil {
					t.Fatal(err)
				}
				if head.APIVersion == "tekton.dev/v1" {
					validateTekton(t, head.Kind, doc)
					continue
				}
				if _, _, err := kube.Decode(doc, nil, nil); err != nil {
					t.Errorf("%s %s: %v", head.APIVersion, head.Kind, err)
				}
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("validated %d files; is deploy/ where it should be?", n)
	}
}

func validateTekton(t *testing.T, kind string, doc []byte) {
	t.Helper()
	ctx := context.Background()
	var obj interface {
		SetDefaults(context.Context)
	}
	var validate func() error
	switch kind {
	case "Pipeline":
		p := &pipelinev1.Pipeline{}
		obj, validate = p, func() error { return fieldErr(p.Validate(ctx)) }
	case "Task":
		tk := &pipelinev1.Task{}
		obj, validate = tk, func() error { return fieldErr(tk.Validate(ctx)) }
	default:
		t.Fatalf("tekton.dev/v1 %s: not checked; add it to the test", kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	obj.SetDefaults(ctx)
	if err := validate(); err != nil {
		t.Errorf("%s: %v", kind, err)
	}
}

func checkKustomization(t *testing.T, path string) {
	t.Helper()
	var k struct {
		APIVersion         string   `json:"apiVersion"`
		Kind               string   `json:"kind"`
		Resources          []string `json:"resources"`
		ConfigMapGenerator []struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Options   map[string]any    `json:"options"`
			Files     []string          `json:"files"`
			Literals  map[string]string `json:"literals"`
		} `json:"configMapGenerator"`
	}
	data, err := os.ReadFile(path)
	if err == nil {
		err = yaml.UnmarshalStrict(data, &k)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	exists := func(p string) {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	for _, r := range k.Resources {
		exists(r)
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			key, file, ok := strings.Cut(f, "=")
			if !ok {
				file = key
			}
			exists(file)
			if strings.Contains(key, "/") {
				t.Errorf("%s: configMap key %q holds a /", path, key)
			}
		}
	}
}

// fieldErr turns Tekton's *apis.FieldError into an error, nil for nil.
func fieldErr(fe *apis.FieldError) error {
	if fe == nil {
		return nil
	}
	return fe
}
