package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/temporaltest"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if devServer != nil {
		devServer.Stop()
	}
	kubestack.StopShared()
	os.Exit(code)
}

var devServer *testsuite.DevServer

// BenchmarkBuildOverhead measures what kiln adds to a build: the Build
// workflow runs base, packages, image and test for every flavour and
// publish, against the real kube-apiserver and Temporal dev server, with
// pipelines that take no time (a watcher marks each PipelineRun Succeeded
// as soon as it is created). The wall time is then all orchestration:
// Temporal's tasks, kiln's creates and watch, the API server's writes.
// It reports:
//
//   - overhead-ms: wall time of one build, start to result;
//   - runs: PipelineRuns per build;
//   - events: history events of the Build workflow;
//   - child-events: history events of one flavour's child workflow.
func BenchmarkBuildOverhead(b *testing.B) {
	st := kubestack.ForTest(b)
	if devServer == nil {
		dir := b.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		srv, err := temporaltest.Start(ctx, dir)
		kubestack.SkipWithoutTools(b, err)
		if err != nil {
			b.Fatal(err)
		}
		devServer = srv
	}
	c := devServer.Client()
	for _, n := range []int{11, 100} {
		b.Run(fmt.Sprintf("flavours=%d", n), func(b *testing.B) {
			b.StopTimer()
			ns := fmt.Sprintf("bench-build-%d-%d", n, time.Now().UnixNano()%1000000)
			if err := st.CreateNamespace(context.Background(), ns); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runs := completeEveryRun(ctx, b, st, ns)
			queue := "bench-" + ns
			cfg := benchConfig(b, ns, queue)
			done := make(chan error, 1)
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
			go func() { done <- worker.Run(ctx, cfg, c, st.RESTConfig(), logger, nil) }()

			var wall time.Duration
			var events, childEvents int
			// Build 0 warms up: the worker's pollers and the namespace's
			// informers start once per worker, not per build.
			for i := 0; i <= b.N; i++ {
				in := workflows.BuildRequest{
					Repo: "https://github.com/gardenlinux/gardenlinux", Branch: ns, Commit: fmt.Sprintf("c%d", i),
					Version: fmt.Sprint(i), Flavours: benchFlavours(n),
					Targets: []workflows.Target{"build", "manifest", "tests", "publish"},
				}
				if i > 0 {
					b.StartTimer()
				}
				start := time.Now()
				run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "build/" + ns + "/" + in.Version, TaskQueue: queue}, "Build", in)
				if err != nil {
					b.Fatal(err)
				}
				if err := run.Get(ctx, nil); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				b.StopTimer()
				if i == 0 {
					runs() // reset the count
					continue
				}
				wall += took
				events += historyLen(ctx, b, c, run.GetID())
				childEvents += historyLen(ctx, b, c, run.GetID()+"/flavour/"+in.Flavours[0].Name())
			}
			cancel()
			<-done
			k := float64(b.N)
			b.ReportMetric(float64(wall.Milliseconds())/k, "overhead-ms")
			b.ReportMetric(float64(runs())/k, "runs")
			b.ReportMetric(float64(events)/k, "events")
			b.ReportMetric(float64(childEvents)/k, "child-events")
		})
	}
}

// historyLen counts the execution's history events. With KILN_BENCH_TRACE
// set, it also logs every gap of more than 20 ms between events: where the
// time goes.
func historyLen(ctx context.Context, b *testing.B, c client.Client, id string) int {
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	var first, prev time.Time
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		n++
		t := e.GetEventTime().AsTime()
		if first.IsZero() {
			first, prev = t, t
		}
		if os.Getenv("KILN_BENCH_TRACE") != "" && t.Sub(prev) > 20*time.Millisecond {
			b.Logf("%s event %d at %v (+%v): %s", id, e.GetEventId(), t.Sub(first).Round(time.Millisecond), t.Sub(prev).Round(time.Millisecond), e.GetEventType())
		}
		prev = t
	}
	return n
}

func benchFlavours(n int) []flavour.Flavour {
	platforms := []string{"aws", "gcp", "azure", "ali", "openstack", "vmware", "kvm", "metal"}
	out := make([]flavour.Flavour, n)
	for i := range out {
		out[i] = flavour.Flavour{
			Platform: platforms[i%len(platforms)], Arch: "amd64", Features: []string{"_prod", fmt.Sprintf("f%03d", i)},
			Build: true, Test: true, Publish: true,
		}
	}
	return out
}

func benchConfig(b *testing.B, ns, queue string) worker.Config {
	dir := b.TempDir()
	path := dir + "/kiln.yaml"
	cfg := `namespace: ` + ns + `
taskQueue: ` + queue + `
parallelism: 100
phases:
  base: {pipelineRef: base}
  packages: {pipelineRef: packages}
  image: {pipelineRef: image, params: {flavour: "{{.Flavour.Name}}"}}
  test: {pipelineRef: test, params: {flavour: "{{.Flavour.Name}}"}}
  publish:
    aws: {pipelineRef: publish}
    gcp: {pipelineRef: publish}
publishing:
  s3Only: [ali, azure, kvm, metal, openstack, vmware]
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	c, err := worker.LoadConfig(path, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// completeEveryRun marks every PipelineRun created in ns Succeeded at once,
// as a pipeline that takes no time would end, and returns a counter.
func completeEveryRun(ctx context.Context, b *testing.B, st *kubestack.Stack, ns string) func() int {
	tk := st.Tekton()
	w, err := tk.TektonV1().PipelineRuns(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	count := make(chan int, 1)
	count <- 0
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			pr, ok := ev.Object.(*pipelinev1.PipelineRun)
			if !ok || ev.Type != watch.Added {
				continue
			}
			count <- (<-count) + 1
			now := metav1.Now()
			pr.Status.StartTime, pr.Status.CompletionTime = &now, &now
			pr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: "True", Reason: "Succeeded"}}
			go func() {
				if _, err := tk.TektonV1().PipelineRuns(ns).UpdateStatus(ctx, pr, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
					b.Error(err)
				}
			}()
		}
	}()
	return func() int {
		n := <-count
		count <- 0
		return n
	}
}
