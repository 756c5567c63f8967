//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/testsuite"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
)

// bigLog is the size of the log of the build task's package step.
const bigLog = 50 << 20

// TestArchiveLogsOfRealPods runs a two-task PipelineRun on the stack, with
// kwok serving the pods' logs (one of them 50 MiB) through the real
// kube-apiserver's pods/log, and archives them into a real S3 server.
func TestArchiveLogsOfRealPods(t *testing.T) {
	s := newSuite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	kube := env.stack.Kube()

	srv, err := s3test.Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := srv.Client()
	const bucket = "kiln-logs"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}

	// What the containers log. Tekton names the pods <run>-<task>-pod.
	dir := t.TempDir()
	logFile := func(name string, r io.Reader) string {
		path := filepath.Join(dir, name+".log")
		if err := kubestack.WriteContainerLog(path, r); err != nil {
			t.Fatal(err)
		}
		return path
	}
	compile := "gcc -c kernel.c\nld -o vmlinuz kernel.o\nno newline at the end"
	run := "PASS: boot\nPASS: network\n"
	serve := map[string]map[string]string{
		"logs-build-pod": {
			"step-compile": logFile("compile", strings.NewReader(compile)),
			"step-package": logFile("package", buildLog(bigLog)),
		},
		"logs-test-pod": {"step-run": logFile("run", strings.NewReader(run))},
	}
	for pod, files := range serve {
		if err := env.stack.ServePodLogs(ctx, s.ns, pod, files); err != nil {
			t.Fatal(err)
		}
	}
	step := func(name string) pipelinev1.Step {
		return pipelinev1.Step{Name: name, Image: "busybox", Script: "echo " + name}
	}
	pr := &pipelinev1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "logs", Namespace: s.ns},
		Spec: pipelinev1.PipelineRunSpec{PipelineSpec: &pipelinev1.PipelineSpec{Tasks: []pipelinev1.PipelineTask{
			{Name: "build", TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{Steps: []pipelinev1.Step{step("compile"), step("package")}}}},
			{Name: "test", RunAfter: []string{"build"}, TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{Steps: []pipelinev1.Step{step("run")}}}},
		}}},
	}
	runs := s.tk.TektonV1().PipelineRuns(s.ns)
	if _, err := runs.Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := runs.Get(ctx, pr.Name, metav1.GetOptions{})
		return err == nil && got.IsDone(), nil
	})
	if err != nil {
		t.Fatalf("pipelinerun not done: %v", err)
	}

	// What kwok serves through pods/log, hashed as the archive should be.
	served := func(pod string, containers ...string) (string, int64) {
		h := sha256.New()
		var n int64
		for _, ctr := range containers {
			rc, err := kube.CoreV1().Pods(s.ns).GetLogs(pod, &corev1.PodLogOptions{Container: ctr}).Stream(ctx)
			if err != nil {
				t.Fatalf("pods/log of %s/%s: %v", pod, ctr, err)
			}
			n += hashSection(t, h, ctr, rc)
			rc.Close()
		}
		return hex.EncodeToString(h.Sum(nil)), n
	}
	// kwok serves exactly what the containers logged.
	wantBuild := sha256.New()
	hashSection(t, wantBuild, "step-compile", strings.NewReader(compile))
	hashSection(t, wantBuild, "step-package", buildLog(bigLog))
	start := time.Now()
	buildSum, buildSize := served("logs-build-pod", "step-compile", "step-package")
	read := time.Since(start)
	if want := hex.EncodeToString(wantBuild.Sum(nil)); buildSum != want {
		t.Fatalf("kwok serves the build pod's logs with sha256 %s, want %s", buildSum, want)
	}
	testSum, testSize := served("logs-test-pod", "step-run")

	var ts testsuite.WorkflowTestSuite
	ts.SetLogger(workerLogger)
	ae := ts.NewTestActivityEnvironment()
	acts := logs.New(kube, s.tk, c, logs.Config{Bucket: bucket, Prefix: "gardenlinux/"})
	ae.RegisterActivity(acts)
	archive := func(path string) logs.ArchiveResult {
		t.Helper()
		v, err := ae.ExecuteActivity(acts.ArchiveLogs, logs.ArchiveRequest{Namespace: s.ns, PipelineRun: pr.Name, Path: path})
		if err != nil {
			t.Fatalf("archive logs: %v", err)
		}
		var res logs.ArchiveResult
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}

	const path = "build/main/1.0/image/kvm-amd64/a1"
	heap := startHeapSampler()
	start = time.Now()
	res := archive(path)
	took := time.Since(start)
	peak := heap.stop()
	t.Logf("archived %d bytes in %v (%.1f MB/s; reading the build pod's logs alone through pods/log: %.1f MB/s); peak heap growth %.1f MiB",
		res.Bytes, took.Round(time.Millisecond), float64(res.Bytes)/took.Seconds()/1e6, float64(buildSize)/read.Seconds()/1e6, float64(peak)/(1<<20))

	if len(res.Logs) != 2 || len(res.Missing) != 0 || res.Bytes != buildSize+testSize {
		t.Fatalf("result = %+v, want build and test, %d bytes", res, buildSize+testSize)
	}
	for task, want := range map[string]string{"build": buildSum, "test": testSum} {
		key := logs.Key("gardenlinux/", path, task)
		if res.Logs[task] != "s3://"+bucket+"/"+key {
			t.Errorf("logs[%s] = %s, want s3://%s/%s", task, res.Logs[task], bucket, key)
		}
		obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, obj.Body)
		obj.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("%s's archived log has sha256 %s, want %s (what kwok served)", task, got, want)
		}
	}
	key := logs.Key("gardenlinux/", path, "test")
	obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if want := "==> step-run <==\n" + run; string(b) != want {
		t.Errorf("test's log = %q, want %q", b, want)
	}

	// The test task's pod goes away (kwok completes the deletion).
	if err := kube.CoreV1().Pods(s.ns).Delete(ctx, "logs-test-pod", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Pods(s.ns).Get(ctx, "logs-test-pod", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod not deleted: %v", err)
	}
	res = archive("build/main/1.0/image/kvm-amd64/a2")
	if !slices.Equal(res.Missing, []string{"test"}) || len(res.Logs) != 1 || res.Logs["build"] == "" {
		t.Errorf("after deleting the test pod: %+v, want build archived and test missing", res)
	}
	// A retry of the first archive still finds the test task's object.
	if res = archive(path); len(res.Missing) != 0 || len(res.Logs) != 2 {
		t.Errorf("retry after deleting the test pod: %+v, want both tasks", res)
	}
}

// hashSection writes a container's section of an archived log into h: its
// header line, its log r, and a newline if the log does not end with one. It
// returns the section's size.
func hashSection(t *testing.T, h hash.Hash, container string, r io.Reader) int64 {
	t.Helper()
	header := "==> " + container + " <==\n"
	h.Write([]byte(header))
	last := lastByte('\n')
	n, err := io.Copy(io.MultiWriter(h, &last), r)
	if err != nil {
		t.Fatal(err)
	}
	n += int64(len(header))
	if last != '\n' {
		h.Write([]byte{'\n'})
		n++
	}
	return n
}

type lastByte byte

func (l *lastByte) Write(b []byte) (int, error) {
	if len(b) > 0 {
		*l = lastByte(b[len(b)-1])
	}
	return len(b), nil
}

// buildLog returns a reader of n bytes of build output, generated as it is
// read.
func buildLog(n int64) io.Reader {
	return io.LimitReader(&buildLogGen{}, n)
}

type buildLogGen struct {
	i   int
	buf []byte
	off int
}

func (g *buildLogGen) Read(b []byte) (int, error) {
	if g.off == len(g.buf) {
		g.i++
		g.buf = fmt.Appendf(g.buf[:0], "%08d CC drivers/net/ethernet/intel/e1000e/netdev.o %x\n", g.i, sha256.Sum256([]byte{byte(g.i), byte(g.i >> 8), byte(g.i >> 16)}))
		g.off = 0
	}
	n := copy(b, g.buf[g.off:])
	g.off += n
	return n, nil
}

// heapSampler records the peak of the heap in use (runtime/metrics' heap
// objects and unused heap, which is runtime.MemStats.HeapInuse), sampled
// every millisecond, above the heap in use when it started.
type heapSampler struct {
	base, peak uint64
	quit, done chan struct{}
}

func heapInUse(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	h := &heapSampler{base: heapInUse(s), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			h.peak = max(h.peak, heapInUse(s))
			select {
			case <-h.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

// stop ends the sampling and returns the peak growth in bytes.
func (h *heapSampler) stop() uint64 {
	close(h.quit)
	<-h.done
	return max(h.peak, h.base) - h.base
}
