package kubestack

import (
	"bufio"
	"context"
	_ "embed" // kwok-tekton-stages.yaml
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
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

// TerminationMessage is the value of AnnotationTerminationMessage that
// makes kwok report results (string results, by name).
func TerminationMessage(results map[string]string) string {
	type entry struct {
		Key   string `json:"key"`
		Value string `json:"value"`
		Type  int    `json:"type"`
	}
	out := make([]entry, 0, len(results))
	for _, k := range slices.Sorted(maps.Keys(results)) {
		out = append(out, entry{Key: k, Value: results[k], Type: 1})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

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
// pods on a fake node, and the run finishes. kwok also serves the kubelet API
// for the node, so the API server's pods/log works: every container logs
// DefaultPodLog unless ServePodLogs names a file for it. It returns once a
// probe PipelineRun in TektonNamespace has succeeded and its log reads
// through pods/log. It must be called at most once, inside a private network
// namespace (else ErrNotIsolated). It returns an error wrapping ErrNoTools if
// the binaries are not built. Stop ends the processes, also those left by a
// failed call.
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
	mod, err := kwokModuleDir()
	if err != nil {
		return err
	}
	stages, err := s.kwokStages(mod)
	if err != nil {
		return err
	}
	if err := s.prepareKwokLogs(ctx, mod); err != nil {
		return fmt.Errorf("prepare kwok's logs: %w", err)
	}
	schedulerPort, err := freePort()
	if err != nil {
		return err
	}
	kubeletPort, err := freePort()
	if err != nil {
		return err
	}

	kwokArgs := []string{
		"--kubeconfig=" + s.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeKey + "=" + kwokNodeValue,
		"--node-ip=127.0.0.1",
		"--cidr=10.244.0.0/16",
		// kwok's kubelet API: node-initialize writes the port into the
		// node's status.daemonEndpoints, where the kube-apiserver looks
		// for it, and kwok serves it, with the certificate the
		// kube-apiserver trusts, on loopback only.
		"--node-port=" + strconv.Itoa(kubeletPort),
		"--server-address=127.0.0.1:" + strconv.Itoa(kubeletPort),
		"--tls-cert-file=" + s.path(kubeletCert),
		"--tls-private-key-file=" + s.path(kubeletKey),
		// Which file serves a container's log comes from Logs and
		// ClusterLogs objects in the cluster (see ServePodLogs).
		"--enable-crds=" + kwokLogsKind + "," + kwokClusterLogsKind,
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
	if err := s.probeLogs(ctx); err != nil {
		return fmt.Errorf("pods/log does not reach kwok (logs in %s): %w", s.dir, err)
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

// kwokModuleDir returns the directory of the kwok module at kwokVersion,
// downloading it if needed.
func kwokModuleDir() (string, error) {
	// go mod download reports failures in the JSON's Error field as well.
	out, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/kwok@"+kwokVersion).Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil || mod.Error != "" || mod.Dir == "" {
		return "", fmt.Errorf("go mod download sigs.k8s.io/kwok@%s: %v %s", kwokVersion, err, mod.Error)
	}
	return mod.Dir, nil
}

// kwokStages returns the paths of kwok's config files: the stock
// node-initialize, pod-ready and pod-delete stages from the kwok module, and
// kiln's Tekton stages, written into the stack's directory.
func (s *Stack) kwokStages(mod string) ([]string, error) {
	dir := filepath.Join(mod, "kustomize", "stage")
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

// kwok's log configuration kinds (kwok.x-k8s.io/v1alpha1).
const (
	kwokLogsKind        = "Logs"
	kwokClusterLogsKind = "ClusterLogs"
	kwokDefaultLogs     = "kiln-default"
	// DefaultPodLog is what every container logs unless ServePodLogs says
	// otherwise.
	DefaultPodLog = "kwok serves no log for this container; see kubestack.Stack.ServePodLogs\n"
)

var (
	kwokLogsResource        = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}
	kwokClusterLogsResource = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterlogs"}
)

// prepareKwokLogs installs kwok's Logs and ClusterLogs CRDs from the kwok
// module and a ClusterLogs that serves DefaultPodLog for every container.
func (s *Stack) prepareKwokLogs(ctx context.Context, mod string) error {
	cs, err := apiextensions.NewForConfig(s.RESTConfig())
	if err != nil {
		return err
	}
	for _, r := range []schema.GroupVersionResource{kwokLogsResource, kwokClusterLogsResource} {
		name := r.Resource + "." + r.Group
		file := filepath.Join(mod, "kustomize", "crd", "bases", r.Group+"_"+r.Resource+".yaml")
		err := eachModuleObject(file, func(crd *apiextensionsv1.CustomResourceDefinition) error {
			if crd.Name == "" {
				return nil
			}
			_, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create CRD %s: %w", crd.Name, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = poll(wctx, 50*time.Millisecond, func() (bool, error) {
			crd, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(wctx, name, metav1.GetOptions{})
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
		cancel()
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}
	file := s.path(filepath.Join("kwok-logs", "default.log"))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	if err := WriteContainerLog(file, strings.NewReader(DefaultPodLog)); err != nil {
		return err
	}
	obj := kwokLogsObject(kwokClusterLogsKind, "", kwokDefaultLogs, map[string]string{"": file})
	dyn, err := dynamic.NewForConfig(s.RESTConfig())
	if err != nil {
		return err
	}
	if _, err := dyn.Resource(kwokClusterLogsResource).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ClusterLogs %s: %w", kwokDefaultLogs, err)
	}
	return nil
}

// kwokLogsObject returns a Logs or ClusterLogs object that serves, for each
// container named in files, that file; the key "" names the file of the
// other containers.
func kwokLogsObject(kind, ns, name string, files map[string]string) *unstructured.Unstructured {
	var logs []any
	for _, c := range slices.Sorted(maps.Keys(files)) {
		l := map[string]any{"logsFile": files[c]}
		if c != "" {
			l["containers"] = []any{c}
		}
		logs = append(logs, l)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kwokLogsResource.GroupVersion().String(),
		"kind":       kind,
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"logs": logs},
	}}
	if ns != "" {
		obj.SetNamespace(ns)
	}
	return obj
}

// ServePodLogs makes kwok serve the logs of the pod ns/pod (which need not
// exist yet) from files: for each container named, that file, and for the
// key "", the file of the other containers. Containers of the pod that files
// does not cover log DefaultPodLog. The files are CRI-format container logs,
// as WriteContainerLog writes them, read when the log is requested. kwok
// learns of the change through a watch, within moments; set the logs before
// the pod is created to be sure. Calling it again for the same pod replaces
// its files.
//
// Tekton names a TaskRun's pod "<taskrun>-pod", and a PipelineRun's
// TaskRuns "<pipelinerun>-<task>" (for names short enough).
func (s *Stack) ServePodLogs(ctx context.Context, ns, pod string, files map[string]string) error {
	dyn, err := dynamic.NewForConfig(s.RESTConfig())
	if err != nil {
		return err
	}
	res := dyn.Resource(kwokLogsResource).Namespace(ns)
	obj := kwokLogsObject(kwokLogsKind, ns, pod, files)
	_, err = res.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *unstructured.Unstructured
		if cur, err = res.Get(ctx, pod, metav1.GetOptions{}); err == nil {
			obj.SetResourceVersion(cur.GetResourceVersion())
			_, err = res.Update(ctx, obj, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("serve logs of pod %s/%s: %w", ns, pod, err)
	}
	return nil
}

// criTime is the timestamp of every line WriteContainerLog writes.
const criTime = "2026-01-01T00:00:00.000000000Z"

// WriteContainerLog writes what r yields into the file path as a container
// runtime logs it (the CRI format: "<time> stdout F <line>" per line), which
// kwok, like the kubelet, parses back into exactly r's content. A last line
// without a newline is written as a partial line ("P"), so that none is
// added. It streams: r may be large.
func WriteContainerLog(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: written as partial lines, as
			// the kubelet splits long lines.
			fmt.Fprintf(w, "%s stdout P %s\n", criTime, line)
			line, err = br.ReadSlice('\n')
		}
		switch {
		case len(line) == 0:
		case line[len(line)-1] == '\n':
			fmt.Fprintf(w, "%s stdout F %s", criTime, line)
		default: // the last line, without a newline
			fmt.Fprintf(w, "%s stdout P %s\n", criTime, line)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("write container log %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// probeLogs reads the probe PipelineRun's step log through the
// kube-apiserver's pods/log, proving that it reaches kwok's kubelet API.
func (s *Stack) probeLogs(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	pods := s.Kube().CoreV1().Pods(TektonNamespace)
	var last error
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		b, err := pods.GetLogs("kiln-probe-probe-pod", &corev1.PodLogOptions{Container: "step-probe"}).DoRaw(ctx)
		if err != nil {
			if ctx.Err() == nil {
				last = err
			}
			return false, nil
		}
		if string(b) != DefaultPodLog {
			return false, fmt.Errorf("the probe pod's log is %q, want %q", b, DefaultPodLog)
		}
		return true, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w (last error: %v)", err, last)
	}
	return err
}
