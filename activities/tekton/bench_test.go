package tekton_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/temporaltest"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// runLifetime is how long the benchmark's runs stay running once every
// waiter waits. Real image builds run for many minutes; polling's cost
// grows with it and the shared watch's does not.
const runLifetime = 3 * time.Second

// BenchmarkAwait measures how one worker process awaits N PipelineRuns at
// once on the real kube-apiserver, through real RunPipeline activities on a
// real Temporal dev server, against the baseline of polling each run with a
// GET once a second (what scripts around `tkn` do). Per N it reports:
//
//   - p50-ms, p99-ms: from the start of the status write that completes a
//     run to its RunPipeline activity returning;
//   - req/run: API requests the awaiting side made per run, beyond the
//     create (shared watch: one LIST and WATCH per informer per namespace);
//   - B/waiter: heap growth per awaiting activity while all N wait, kiln's
//     Subscription and cached run plus the SDK's own per-activity and
//     per-workflow state (the namespace's informers are started before);
//   - watch-*: the same figures for kiln's Watcher alone, without Temporal:
//     a goroutine per run that subscribes and returns when its run is done,
//     which splits kiln's own share from the SDK's;
//   - poll-*: the same figures for the polling baseline (its waiters are
//     bare goroutines, so its B/waiter is not comparable);
//   - x-p99, x-req: polling's figure divided by kiln's.
//
// Run it with `make bench`.
func BenchmarkAwait(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
			b.StopTimer() // only the completion of the runs is timed
			st := kubestack.ForTest(b)
			tc := benchTemporal(b)
			var k, w, p figures
			for i := 0; i < b.N; i++ {
				k.add(awaitWithKiln(b, st, tc, n))
				w.add(awaitWithWatcher(b, st, n))
				p.add(awaitByPolling(b, st, n))
			}
			k.report(b, "", b.N)
			w.report(b, "watch-", b.N)
			p.report(b, "poll-", b.N)
			b.ReportMetric(p.p99/k.p99, "x-p99")
			b.ReportMetric(p.reqs/k.reqs, "x-req")
		})
	}
}

type figures struct{ p50, p99, reqs, heap float64 }

func (f *figures) add(g figures) {
	f.p50 += g.p50
	f.p99 += g.p99
	f.reqs += g.reqs
	f.heap += g.heap
}

func (f figures) report(b *testing.B, prefix string, n int) {
	k := float64(n)
	b.ReportMetric(f.p50/k, prefix+"p50-ms")
	b.ReportMetric(f.p99/k, prefix+"p99-ms")
	b.ReportMetric(f.reqs/k, prefix+"req/run")
	b.ReportMetric(f.heap/k, prefix+"B/waiter")
}

func latencies(began, seen map[string]time.Time) (p50, p99 float64) {
	lat := make([]time.Duration, 0, len(began))
	for name, t := range began {
		lat = append(lat, seen[name].Sub(t))
	}
	slices.Sort(lat)
	n := len(lat)
	return ms(lat[n/2]), ms(lat[min(n-1, n*99/100)])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

var benchServer struct {
	once   sync.Once
	srv    *testsuite.DevServer
	client client.Client
	err    error
	dir    string
}

// benchTemporal starts the Temporal dev server the benchmarks share;
// TestMain stops it.
func benchTemporal(b *testing.B) client.Client {
	benchServer.once.Do(func() {
		benchServer.dir, benchServer.err = os.MkdirTemp("", "kiln-bench-temporal-")
		if benchServer.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		benchServer.srv, benchServer.err = temporaltest.Start(ctx, benchServer.dir)
		if benchServer.err == nil {
			benchServer.client = benchServer.srv.Client()
		}
	})
	kubestack.SkipWithoutTools(b, benchServer.err)
	if benchServer.err != nil {
		b.Fatal(benchServer.err)
	}
	return benchServer.client
}

func stopBenchTemporal() {
	if benchServer.srv != nil {
		benchServer.srv.Stop()
	}
	if benchServer.dir != "" {
		os.RemoveAll(benchServer.dir)
	}
}

// benchPhase runs one RunPipeline activity (through benchActivity).
func benchPhase(ctx workflow.Context, in tekton.PipelineRunRequest) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	return workflow.ExecuteActivity(ctx, "BenchRunPipeline", in).Get(ctx, nil)
}

// awaitWithKiln starts n workflows whose RunPipeline activities create and
// await n runs, completes the runs once all n wait, and measures.
func awaitWithKiln(b *testing.B, st *kubestack.Stack, tc client.Client, n int) figures {
	ctx := context.Background()
	ns := benchNamespace(b, st, "kiln", n)
	count := &kubestack.Counter{}
	kc := versioned.NewForConfigOrDie(count.Wrap(st.RESTConfig()))
	w := tekton.NewWatcher(kc, 0)
	defer w.Close()
	acts, err := tekton.New(kc, w, tekton.Options{HeartbeatInterval: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	returned := map[string]time.Time{}
	queue := "bench-" + ns
	wk := worker.New(tc, queue, worker.Options{
		MaxConcurrentActivityExecutionSize:     n + 10,
		MaxConcurrentActivityTaskPollers:       8,
		MaxConcurrentWorkflowTaskPollers:       8,
		DisableRegistrationAliasing:            true,
		MaxConcurrentWorkflowTaskExecutionSize: 64,
	})
	wk.RegisterWorkflow(benchPhase)
	wk.RegisterActivityWithOptions(func(ctx context.Context, in tekton.PipelineRunRequest) error {
		res, err := acts.RunPipeline(ctx, in)
		mu.Lock()
		returned[res.PipelineRun] = time.Now()
		mu.Unlock()
		return err
	}, activity.RegisterOptions{Name: "BenchRunPipeline"})
	if err := wk.Start(); err != nil {
		b.Fatal(err)
	}
	defer wk.Stop()

	// Start the namespace's informers first: B/waiter is what each further
	// awaited run costs, not the informers' fixed cost.
	probe, err := w.Subscribe(ctx, ns, "warm-up")
	if err != nil {
		b.Fatal(err)
	}
	probe.Close()
	before := heapAlloc()
	runs := make([]client.WorkflowRun, n)
	parallel(n, func(i int) {
		in := tekton.PipelineRunRequest{
			Namespace: ns, Key: fmt.Sprintf("bench/%s/flavour-%d", ns, i), PipelineRef: "image",
			Labels: map[string]string{"kiln.dev/phase": "images"},
		}
		r, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: in.Key, TaskQueue: queue}, benchPhase, in)
		if err != nil {
			b.Error(err)
		}
		runs[i] = r
	})
	if b.Failed() {
		b.FailNow()
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		return w.Waiters() == n, nil
	})
	if err != nil {
		b.Fatalf("%d of %d activities awaiting: %v", w.Waiters(), n, err)
	}
	time.Sleep(runLifetime)
	heap := float64(heapAlloc()-before) / float64(n)
	creates := count.Get("POST")

	sim := st.NewSimulator()
	list, err := sim.Client.TektonV1().PipelineRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != n {
		b.Fatalf("listed %d runs (%v), want %d", len(list.Items), err, n)
	}
	names := make([]string, n)
	for i, pr := range list.Items {
		names[i] = pr.Name
	}
	b.StartTimer()
	began := completeRuns(b, sim.Client, ns, names)
	parallel(n, func(i int) {
		if err := runs[i].Get(ctx, nil); err != nil {
			b.Error(err)
		}
	})
	b.StopTimer()
	if b.Failed() {
		b.FailNow()
	}
	var f figures
	mu.Lock()
	f.p50, f.p99 = latencies(began, returned)
	mu.Unlock()
	f.reqs = float64(count.Total()-creates) / float64(n)
	f.heap = heap
	deleteNamespace(b, st, ns)
	return f
}

// awaitWithWatcher creates n runs, awaits each through a Subscription of one
// Watcher in a goroutine of its own, completes the runs and measures.
func awaitWithWatcher(b *testing.B, st *kubestack.Stack, n int) figures {
	ctx := context.Background()
	ns := benchNamespace(b, st, "watch", n)
	sim := st.NewSimulator()
	names := createBenchRuns(b, sim.Client, ns, n, map[string]string{tekton.LabelManagedBy: tekton.ManagedByValue})
	count := &kubestack.Counter{}
	w := tekton.NewWatcher(versioned.NewForConfigOrDie(count.Wrap(st.RESTConfig())), 0)
	defer w.Close()
	probe, err := w.Subscribe(ctx, ns, "warm-up")
	if err != nil {
		b.Fatal(err)
	}
	probe.Close()
	var mu sync.Mutex
	seen := map[string]time.Time{}
	var ready, done sync.WaitGroup
	before := heapAlloc()
	for _, name := range names {
		ready.Add(1)
		done.Go(func() {
			sub, err := w.Subscribe(ctx, ns, name)
			ready.Done()
			if err != nil {
				b.Error(err)
				return
			}
			defer sub.Close()
			for range sub.C {
				if pr, ok := sub.Get(); ok && pr.IsDone() {
					mu.Lock()
					seen[name] = time.Now()
					mu.Unlock()
					return
				}
			}
		})
	}
	ready.Wait()
	heap := float64(heapAlloc()-before) / float64(n)
	return measure(b, st, sim, ns, names, heap, count, func() map[string]time.Time { done.Wait(); return seen })
}

// createBenchRuns creates n PipelineRuns with the given labels and returns
// their names.
func createBenchRuns(b *testing.B, c versioned.Interface, ns string, n int, labels map[string]string) []string {
	names := make([]string, n)
	parallel(n, func(i int) {
		pr := &pipelinev1.PipelineRun{
			ObjectMeta: metav1.ObjectMeta{Name: tekton.RunName(fmt.Sprintf("bench/%s/%d", ns, i)), Namespace: ns, Labels: labels},
			Spec:       pipelinev1.PipelineRunSpec{PipelineRef: &pipelinev1.PipelineRef{Name: "image"}},
		}
		if _, err := c.TektonV1().PipelineRuns(ns).Create(context.Background(), pr, metav1.CreateOptions{}); err != nil {
			b.Error(err)
		}
		names[i] = pr.Name
	})
	if b.Failed() {
		b.FailNow()
	}
	return names
}

// awaitByPolling creates n runs, has a goroutine per run GET it once a
// second (starting at spread-out phases, as independent scripts would),
// completes the runs and measures.
func awaitByPolling(b *testing.B, st *kubestack.Stack, n int) figures {
	ctx := context.Background()
	ns := benchNamespace(b, st, "poll", n)
	sim := st.NewSimulator()
	names := createBenchRuns(b, sim.Client, ns, n, nil)
	count := &kubestack.Counter{}
	kc := versioned.NewForConfigOrDie(count.Wrap(st.RESTConfig()))
	var mu sync.Mutex
	seen := map[string]time.Time{}
	var done sync.WaitGroup
	before := heapAlloc()
	for i, name := range names {
		done.Go(func() {
			time.Sleep(time.Duration(i%1000) * time.Millisecond)
			for {
				pr, err := kc.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					b.Error(err)
					return
				}
				if pr.IsDone() {
					mu.Lock()
					seen[name] = time.Now()
					mu.Unlock()
					return
				}
				time.Sleep(time.Second)
			}
		})
	}
	heap := float64(heapAlloc()-before) / float64(n)
	return measure(b, st, sim, ns, names, heap, count, func() map[string]time.Time { done.Wait(); return seen })
}

// measure lets the runs live runLifetime, completes them (timed), waits
// for the waiters with wait, which returns when each saw its run done,
// and computes the figures: latency per run, requests the waiting side
// made per run, and the heap per waiter measured by the caller.
func measure(b *testing.B, st *kubestack.Stack, sim *kubestack.Simulator, ns string, names []string,
	heap float64, count *kubestack.Counter, wait func() map[string]time.Time) figures {
	time.Sleep(runLifetime)
	b.StartTimer()
	began := completeRuns(b, sim.Client, ns, names)
	seen := wait()
	b.StopTimer()
	var f figures
	f.p50, f.p99 = latencies(began, seen)
	f.reqs = float64(count.Total()) / float64(len(names))
	f.heap = heap
	deleteNamespace(b, st, ns)
	return f
}

func benchNamespace(b *testing.B, st *kubestack.Stack, kind string, n int) string {
	ns := fmt.Sprintf("bench-%s-%d-%d", kind, n, time.Now().UnixNano()%1000000)
	if err := st.CreateNamespace(context.Background(), ns); err != nil {
		b.Fatal(err)
	}
	return ns
}

func deleteNamespace(b *testing.B, st *kubestack.Stack, ns string) {
	if err := st.Kube().CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil {
		b.Fatal(err)
	}
}

// completeRuns marks every named run Succeeded, from 8 writers, and returns
// when each write began.
func completeRuns(b *testing.B, c versioned.Interface, ns string, names []string) map[string]time.Time {
	ctx := context.Background()
	var mu sync.Mutex
	began := make(map[string]time.Time, len(names))
	parallel(len(names), func(i int) {
		pr, err := c.TektonV1().PipelineRuns(ns).Get(ctx, names[i], metav1.GetOptions{})
		if err != nil {
			b.Error(err)
			return
		}
		now := metav1.Now()
		pr.Status.StartTime = &now
		pr.Status.CompletionTime = &now
		pr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: "True", Reason: "Succeeded"}}
		t := time.Now()
		if _, err := c.TektonV1().PipelineRuns(ns).UpdateStatus(ctx, pr, metav1.UpdateOptions{}); err != nil {
			b.Error(err)
			return
		}
		mu.Lock()
		began[names[i]] = t
		mu.Unlock()
	})
	if b.Failed() {
		b.FailNow()
	}
	return began
}

// parallel calls f(0..n-1) from 8 goroutines.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
