package kubestack

import (
	"context"
	_ "embed" // kwok-tekton-stages.yaml
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/apis"
)

// TektonNamespace is the namespace the Tekton controller reads its
// configuration from. StartTekton also runs its probe PipelineRun there.
const TektonNamespace = "tekton-pipelines"

// Pod metadata that steers kwok's Tekton stages. PipelineRun labels and
// annotations propagate to every pod of the run; to steer one task, set them
// in the PipelineRun's spec.taskRunSpecs[].metadata instead.
const (
	// LabelOutcome set to OutcomeFail makes a step of the pod fail (exit
	// code 1): the TaskRun ends with reason Failed, the PipelineRun with
	// Failed. Set to OutcomeHold, the pod keeps running until the label is
	// changed (see Stack.Release).
	LabelOutcome = "kiln.test/outcome"
	OutcomeFail  = "fail"
	OutcomeHold  = "hold"
	// AnnotationFailStep names the step that fails (without the "step-"
	// prefix); by default the first one does.
	AnnotationFailStep = "kiln.test/fail-step"
	// AnnotationTerminationMessage is copied into every step's termination
	// message, which Tekton reads for results: a JSON array such as
	// [{"key":"digest","value":"sha256:abc","type":1}]. The annotation
	// AnnotationTerminationMessage + ".step-<name>" overrides it for one step.
	AnnotationTerminationMessage = "kiln.test/termination-message"
)

// ErrNotIsolated means StartTekton was called outside a private network
// namespace. The Tekton controller binds :8080 and :9090 on every interface
// whatever its flags say, so the tier only runs where loopback is the only
// interface up, as under test/netns-run.
var ErrNotIsolated = errors.New("the Tekton tier must run in a private network namespace (test/netns-run)")

const (
	kwokVersion = "v0.8.0"
	// kwok plays the kubelet only for nodes with this annotation.
	kwokNodeKey, kwokNodeValue = "kwok.x-k8s.io/node", "fake"
	fakeNodeName               = "kwok-node-0"
)

//go:embed testdata/kwok-tekton-stages.yaml
var kwokTektonStages []byte

// StartTekton starts the real Tekton controller, kube-scheduler and kwok
// against a started Stack, so that a PipelineRun in a namespace prepared with
// PrepareNamespace is reconciled into TaskRuns and Pods, kwok completes the
// pods on a fake node, and the run finishes. It returns once a probe
// PipelineRun in TektonNamespace has succeeded. It must be called at most
// once, inside a private network namespace (else ErrNotIsolated). It returns
// an error wrapping ErrNoTools if the binaries are not built. Stop ends the
// processes, also those left by a failed call.
func (s *Stack) StartTekton(ctx context.Context) error {
	if err := checkIsolated(); err != nil {
		return err
	}
	controllerBin, err := Tool("tekton-controller")
	if err != nil {
		return err
	}
	schedulerBin, err := Tool("kube-scheduler")
	if err != nil {
		return err
	}
	kwokBin, err := Tool("kwok")
	if err != nil {
		return err
	}
	if len(s.extra) > 0 {
		return errors.New("kubestack: the Tekton tier is already started")
	}
	kube := s.Kube()
	if err := s.PrepareNamespace(ctx, TektonNamespace); err != nil {
		return err
	}
	if err := createTektonConfig(ctx, kube); err != nil {
		return fmt.Errorf("create Tekton config: %w", err)
	}
	if err := createFakeNode(ctx, kube); err != nil {
		return fmt.Errorf("create node %s: %w", fakeNodeName, err)
	}
	stages, err := s.kwokStages()
	if err != nil {
		return err
	}
	schedulerPort, err := freePort()
	if err != nil {
		return err
	}

	kwokArgs := []string{
		"--kubeconfig=" + s.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeKey + "=" + kwokNodeValue,
		"--node-ip=127.0.0.1",
		"--cidr=10.244.0.0/16",
	}
	for _, f := range stages {
		kwokArgs = append(kwokArgs, "--config="+f)
	}
	procs := []*process{{
		name: "kwok", path: kwokBin, log: s.path("kwok.log"), args: kwokArgs,
		// kwok also reads $HOME/.kwok/kwok.yaml; keep the user's out.
		env: []string{"HOME=" + s.dir},
	}, {
		name: "kube-scheduler", path: schedulerBin, log: s.path("kube-scheduler.log"),
		args: []string{
			"--kubeconfig=" + s.Kubeconfig,
			"--authentication-kubeconfig=" + s.Kubeconfig,
			"--authorization-kubeconfig=" + s.Kubeconfig,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(schedulerPort),
		},
	}, {
		name: "tekton-controller", path: controllerBin, log: s.path("tekton-controller.log"),
		// The images are never pulled: kwok runs no containers. Steps must
		// set a script or a command, or Tekton asks a registry for the
		// image's entrypoint.
		args: []string{
			"-kubeconfig=" + s.Kubeconfig,
			"-disable-ha",
			"-kube-api-qps=500",
			"-kube-api-burst=1000",
			"-entrypoint-image=kiln.test/tekton/entrypoint",
			"-nop-image=kiln.test/tekton/nop",
			"-sidecarlogresults-image=kiln.test/tekton/sidecarlogresults",
			"-workingdirinit-image=kiln.test/tekton/workingdirinit",
			"-shell-image=kiln.test/tekton/busybox",
			"-shell-image-win=kiln.test/tekton/powershell",
		},
		env: []string{
			"SYSTEM_NAMESPACE=" + TektonNamespace,
			"KUBERNETES_MIN_VERSION=v1.28.0",
			"CONFIG_DEFAULTS_NAME=config-defaults",
			"CONFIG_LOGGING_NAME=config-logging",
			"CONFIG_OBSERVABILITY_NAME=config-observability",
			"CONFIG_FEATURE_FLAGS_NAME=feature-flags",
			"CONFIG_LEADERELECTION_NAME=config-leader-election-controller",
			"CONFIG_SPIRE=config-spire",
			"METRICS_DOMAIN=tekton.dev/pipeline",
		},
	}}
	for _, p := range procs {
		if err := p.start(); err != nil {
			return err
		}
		s.extra = append(s.extra, p)
	}
	if err := s.probeTekton(ctx); err != nil {
		return fmt.Errorf("tekton tier not ready (logs in %s): %w", s.dir, err)
	}
	return nil
}

// PrepareNamespace creates the namespace name and its default
// ServiceAccount, which Tekton needs for every run and which no
// controller-manager creates on this stack. Both may exist already.
func (s *Stack) PrepareNamespace(ctx context.Context, name string) error {
	kube := s.Kube()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := kube.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/default: %w", name, err)
	}
	return nil
}

// Tekton returns a Tekton clientset for the stack.
func (s *Stack) Tekton() versioned.Interface {
	return versioned.NewForConfigOrDie(s.RESTConfig())
}

// checkIsolated returns ErrNotIsolated if an interface other than loopback
// is up.
func checkIsolated() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("%w: interface %s is up", ErrNotIsolated, i.Name)
		}
	}
	return nil
}

// createTektonConfig creates the module's config/config-*.yaml ConfigMaps in
// TektonNamespace.
func createTektonConfig(ctx context.Context, kube kubernetes.Interface) error {
	mod, err := TektonModuleDir()
	if err != nil {
		return err
	}
	return eachModuleObject(filepath.Join(mod, "config", "config-*.yaml"), func(cm *corev1.ConfigMap) error {
		if cm.Kind != "ConfigMap" || cm.Name == "" {
			return nil
		}
		cm.Namespace = TektonNamespace
		if _, err := kube.CoreV1().ConfigMaps(TektonNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ConfigMap %s: %w", cm.Name, err)
		}
		return nil
	})
}

// createFakeNode creates the node kwok plays the kubelet for, with room for
// any number of pods, and removes the not-ready taint that the apiserver's
// TaintNodesByCondition admission adds: no node lifecycle controller runs
// here to lift it.
func createFakeNode(ctx context.Context, kube kubernetes.Interface) error {
	room := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1k"),
		corev1.ResourceMemory: resource.MustParse("1Ti"),
		corev1.ResourcePods:   resource.MustParse("1M"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        fakeNodeName,
			Annotations: map[string]string{kwokNodeKey: kwokNodeValue},
			Labels: map[string]string{
				"kubernetes.io/hostname": fakeNodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: room, Allocatable: room},
	}
	got, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = kube.CoreV1().Nodes().Get(ctx, fakeNodeName, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	if len(got.Spec.Taints) == 0 {
		return nil
	}
	_, err = kube.CoreV1().Nodes().Patch(ctx, fakeNodeName, types.MergePatchType, []byte(`{"spec":{"taints":null}}`), metav1.PatchOptions{})
	return err
}

// kwokStages returns the paths of kwok's config files: the stock
// node-initialize, pod-ready and pod-delete stages from the kwok module, and
// kiln's Tekton stages, written into the stack's directory.
func (s *Stack) kwokStages() ([]string, error) {
	// go mod download reports failures in the JSON's Error field as well.
	out, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/kwok@"+kwokVersion).Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil || mod.Error != "" || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download sigs.k8s.io/kwok@%s: %v %s", kwokVersion, err, mod.Error)
	}
	dir := filepath.Join(mod.Dir, "kustomize", "stage")
	files := []string{
		filepath.Join(dir, "node", "fast", "node-initialize.yaml"),
		filepath.Join(dir, "pod", "fast", "pod-ready.yaml"),
		filepath.Join(dir, "pod", "fast", "pod-delete.yaml"),
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("kwok stage: %w", err)
		}
	}
	own := s.path("kwok-tekton-stages.yaml")
	if err := os.WriteFile(own, kwokTektonStages, 0o644); err != nil {
		return nil, err
	}
	return append(files, own), nil
}

// probeTekton runs a one-task PipelineRun in TektonNamespace and waits until
// it succeeds, proving that the controller, the scheduler and kwok all work.
func (s *Stack) probeTekton(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	runs := s.Tekton().TektonV1().PipelineRuns(TektonNamespace)
	pr := &pipelinev1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "kiln-probe", Namespace: TektonNamespace},
		Spec: pipelinev1.PipelineRunSpec{PipelineSpec: &pipelinev1.PipelineSpec{
			Tasks: []pipelinev1.PipelineTask{{
				Name: "probe",
				TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{
					Steps: []pipelinev1.Step{{Name: "probe", Image: "busybox", Script: "true"}},
				}},
			}},
		}},
	}
	if _, err := runs.Create(ctx, pr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create probe PipelineRun: %w", err)
	}
	var cond *apis.Condition
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		for _, p := range s.extra {
			if err := p.exited(); err != nil {
				return false, err
			}
		}
		got, err := runs.Get(ctx, pr.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		cond = got.Status.GetCondition(apis.ConditionSucceeded)
		if got.IsFailure() {
			return false, fmt.Errorf("probe PipelineRun failed: %s: %s", cond.Reason, cond.Message)
		}
		return got.IsSuccessful(), nil
	})
	if err != nil && cond != nil {
		return fmt.Errorf("%w (probe PipelineRun %s: %s)", err, cond.Reason, cond.Message)
	}
	return err
}

// Release lets the held pods of the PipelineRun ns/name (label LabelOutcome
// set to OutcomeHold) finish successfully, and returns how many it released.
func (s *Stack) Release(ctx context.Context, ns, name string) (int, error) {
	kube := s.Kube()
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: "tekton.dev/pipelineRun=" + name + "," + LabelOutcome + "=" + OutcomeHold,
	})
	if err != nil {
		return 0, err
	}
	patch := []byte(`{"metadata":{"labels":{"` + LabelOutcome + `":"released"}}}`)
	for _, p := range pods.Items {
		if _, err := kube.CoreV1().Pods(ns).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return 0, fmt.Errorf("release pod %s: %w", p.Name, err)
		}
	}
	return len(pods.Items), nil
}
