package kubestack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
)

// TektonModuleDir returns the directory of the tektoncd/pipeline module that
// kiln's go.mod pins, as the go command resolves it.
func TektonModuleDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tektoncd/pipeline").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list tektoncd/pipeline: %s", ee.Stderr)
		}
		return "", fmt.Errorf("go list tektoncd/pipeline: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("go list tektoncd/pipeline: module not downloaded; run go mod download")
	}
	return dir, nil
}

// eachModuleObject decodes every YAML document of the files matching
// pattern into a fresh T and calls fn with it. It fails when no file
// matches.
func eachModuleObject[T any](pattern string, fn func(*T) error) error {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no files match %s", pattern)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			obj := new(T)
			if err := dec.Decode(obj); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if err := fn(obj); err != nil {
				return err
			}
		}
	}
	return nil
}

// installTektonCRDs installs every CRD in the module's config/300-crds and
// waits until each is established. The conversion webhook is dropped: kiln
// speaks tekton.dev/v1 only and the test stack runs no Tekton webhook.
func installTektonCRDs(ctx context.Context, cfg *rest.Config) error {
	mod, err := TektonModuleDir()
	if err != nil {
		return err
	}
	cs, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var names []string
	err = eachModuleObject(filepath.Join(mod, "config", "300-crds", "*.yaml"), func(crd *apiextensionsv1.CustomResourceDefinition) error {
		if crd.Name == "" {
			return nil
		}
		crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.NoneConverter}
		if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", crd.Name, err)
		}
		names = append(names, crd.Name)
		return nil
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, name := range names {
		err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
			crd, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}
	return nil
}
