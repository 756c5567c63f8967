package tekton

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	"go.temporal.io/sdk/temporal"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// labelPipelineRun is the label Tekton puts on a TaskRun naming its
// PipelineRun.
const labelPipelineRun = "tekton.dev/pipelineRun"

// Watcher awaits PipelineRuns through shared informers: one PipelineRun and
// one TaskRun informer per namespace, started on first use, listing and
// watching only runs labelled ManagedSelector. It fans events out to
// Subscriptions by PipelineRun name. An informer's failing LIST or WATCH
// reaches the Subscriptions of its namespace through Subscription.Err. A
// Watcher is safe for concurrent use by multiple goroutines; create one per
// worker process and Close it on shutdown.
type Watcher struct {
	client versioned.Interface
	resync time.Duration
	grace  atomic.Int64 // time.Duration; see SetWatchErrorGrace

	mu     sync.Mutex
	spaces map[string]*space
	stop   chan struct{}
	closed bool
}

// NewWatcher returns a Watcher over client. resync is the informers' resync
// period, a safety net that re-delivers every cached run to its waiters;
// zero means 5 minutes.
func NewWatcher(client versioned.Interface, resync time.Duration) *Watcher {
	if resync <= 0 {
		resync = 5 * time.Minute
	}
	w := &Watcher{client: client, resync: resync, spaces: map[string]*space{}, stop: make(chan struct{})}
	w.grace.Store(int64(DefaultWatchErrorGrace))
	return w
}

// DefaultWatchErrorGrace is how long a LIST or WATCH may fail with an error
// other than Forbidden or Unauthorized before Subscription.Err reports it.
const DefaultWatchErrorGrace = time.Minute

// SetWatchErrorGrace sets how long a LIST or WATCH may fail with a
// retryable error (connection refused, a 5xx answer, a webhook that is
// down) before Subscription.Err reports it, counted from when the failure
// began or the Subscription was made, whichever is later. client-go retries
// meanwhile, and a blip passes unreported. Zero or less means
// DefaultWatchErrorGrace. Forbidden and Unauthorized are reported at once.
func (w *Watcher) SetWatchErrorGrace(d time.Duration) {
	if d <= 0 {
		d = DefaultWatchErrorGrace
	}
	w.grace.Store(int64(d))
}

// Close stops every informer. Subscriptions stay readable from the last
// cached state but receive no more notifications.
func (w *Watcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
}

// Waiters returns how many Subscriptions are registered, over all
// namespaces: the number of PipelineRuns this process is awaiting.
func (w *Watcher) Waiters() int {
	w.mu.Lock()
	spaces := make([]*space, 0, len(w.spaces))
	for _, sp := range w.spaces {
		spaces = append(spaces, sp)
	}
	w.mu.Unlock()
	n := 0
	for _, sp := range spaces {
		sp.mu.Lock()
		for _, ws := range sp.waiters {
			n += len(ws)
		}
		sp.mu.Unlock()
	}
	return n
}

// space is the informer pair and the waiters of one namespace.
type space struct {
	ns     string
	runs   listers.PipelineRunNamespaceLister
	tasks  listers.TaskRunNamespaceLister
	synced chan struct{}
	grace  *atomic.Int64

	mu      sync.Mutex
	waiters map[string][]*Subscription
	// failures holds each resource's failing LIST or WATCH, by resource
	// (pipelineruns, taskruns), until a WATCH is established again.
	failures map[string]*informerFailure
}

// informerFailure is the trouble of one informer: since when its LIST or
// WATCH has failed, and the latest error.
type informerFailure struct {
	since, last time.Time
	err         *informerError
}

// informerError is a failed LIST or WATCH of one namespace's informer.
type informerError struct {
	verb, resource, namespace string
	err                       error
}

func (e *informerError) Error() string {
	return fmt.Sprintf("%s %s in namespace %s: %v", e.verb, e.resource, e.namespace, e.err)
}

func (e *informerError) Unwrap() error { return e.err }

// refused reports an answer that retrying does not change: the worker's
// credentials or its RBAC.
func (e *informerError) refused() bool {
	return apierrors.IsForbidden(e.err) || apierrors.IsUnauthorized(e.err)
}

// failed records a failing LIST or WATCH and wakes every waiter of the
// namespace, so that they read Err.
func (sp *space) failed(e *informerError) {
	now := time.Now()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	f := sp.failures[e.resource]
	if f == nil {
		f = &informerFailure{since: now}
		sp.failures[e.resource] = f
	}
	f.last, f.err = now, e
	sp.wakeAll()
}

// watching records that a resource's WATCH is established: its informer is
// healthy again. A successful LIST alone is not enough, since RBAC may
// allow list but not watch.
func (sp *space) watching(resource string) {
	sp.mu.Lock()
	delete(sp.failures, resource)
	sp.mu.Unlock()
}

// onWatchError is the informers' WatchErrorHandler: it records what drops a
// LIST or WATCH, besides the expiries and closed streams client-go handles
// by itself, and logs as client-go does.
func (sp *space) onWatchError(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if routine(err) {
			return
		}
		var ie *informerError
		if !errors.As(err, &ie) { // an error inside the watch stream
			ie = &informerError{verb: "watch", resource: resource, namespace: sp.ns, err: err}
		}
		sp.failed(ie)
	}
}

// routine reports the errors that end a LIST or WATCH in normal operation:
// an expired resource version, which makes client-go list again, and a
// closed stream.
func routine(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// wakeAll wakes every waiter of the namespace. sp.mu must be held.
func (sp *space) wakeAll() {
	for _, ws := range sp.waiters {
		for _, s := range ws {
			s.wake()
		}
	}
}

func (w *Watcher) space(ns string) (*space, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, fmt.Errorf("watcher is closed")
	}
	if sp, ok := w.spaces[ns]; ok {
		return sp, nil
	}
	sp := &space{
		ns:       ns,
		synced:   make(chan struct{}),
		grace:    &w.grace,
		waiters:  map[string][]*Subscription{},
		failures: map[string]*informerFailure{},
	}
	runs := w.client.TektonV1().PipelineRuns(ns)
	tasks := w.client.TektonV1().TaskRuns(ns)
	runInf := managedInformer(sp, "pipelineruns", runs.List, runs.Watch, &pipelinev1.PipelineRun{}, w.resync)
	taskInf := managedInformer(sp, "taskruns", tasks.List, tasks.Watch, &pipelinev1.TaskRun{}, w.resync)
	sp.runs = listers.NewPipelineRunLister(runInf.GetIndexer()).PipelineRuns(ns)
	sp.tasks = listers.NewTaskRunLister(taskInf.GetIndexer()).TaskRuns(ns)
	if err := runInf.SetWatchErrorHandlerWithContext(sp.onWatchError("pipelineruns")); err != nil {
		return nil, err
	}
	if err := taskInf.SetWatchErrorHandlerWithContext(sp.onWatchError("taskruns")); err != nil {
		return nil, err
	}
	if err := runInf.SetTransform(slimPipelineRun); err != nil {
		return nil, err
	}
	if err := taskInf.SetTransform(slimTaskRun); err != nil {
		return nil, err
	}
	if _, err := runInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { sp.notify(objectName(obj)) },
		UpdateFunc: func(_, obj any) { sp.notify(objectName(obj)) },
		DeleteFunc: func(obj any) { sp.notify(objectName(obj)) },
	}); err != nil {
		return nil, err
	}
	owner := func(obj any) {
		if tr, ok := obj.(*pipelinev1.TaskRun); ok {
			sp.notify(tr.Labels[labelPipelineRun])
		}
	}
	if _, err := taskInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    owner,
		UpdateFunc: func(_, obj any) { owner(obj) },
	}); err != nil {
		return nil, err
	}
	go runInf.Run(w.stop)
	go taskInf.Run(w.stop)
	// Waiters need the PipelineRun cache to be complete; TaskRuns only add
	// progress detail, which arrives with the TaskRun events, so waiters do
	// not wait for the TaskRun informer.
	go func() {
		if cache.WaitForCacheSync(w.stop, runInf.HasSynced) {
			sp.mu.Lock()
			close(sp.synced)
			sp.wakeAll() // the first read of every waiter registered before
			sp.mu.Unlock()
		}
	}()
	w.spaces[ns] = sp
	return sp, nil
}

func objectName(obj any) string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, ok := obj.(metav1.Object); ok {
		return m.GetName()
	}
	return ""
}

// notify wakes every waiter of the named run without blocking: a waiter has
// a one-slot channel, and a pending wake-up already covers this event
// because the waiter reads the newest state from the cache.
func (sp *space) notify(name string) {
	if name == "" {
		return
	}
	sp.mu.Lock()
	for _, s := range sp.waiters[name] {
		s.wake()
	}
	sp.mu.Unlock()
}

// Subscription is one waiter on one PipelineRun. C receives a value when the
// namespace's cache has synced, whenever the run or one of its TaskRuns may
// have changed, and whenever a LIST or WATCH of the namespace fails; read
// the state with Get and the trouble with Err. Close it when done.
type Subscription struct {
	C     <-chan struct{}
	c     chan struct{}
	sp    *space
	name  string
	start time.Time
}

// wake queues a notification without blocking: a pending one already
// covers it, because the waiter reads the newest state.
func (s *Subscription) wake() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// Register registers a waiter for the named PipelineRun and returns at
// once, starting the namespace's informers on first use. C receives its
// first value when the cache has synced (at once if it had), so that a run
// that finished while the worker was down is seen then; before that, Get
// answers from an incomplete cache. A caller that must stay responsive
// while the cache syncs, such as an activity that heartbeats, uses Register
// and watches Err; others use Subscribe.
func (w *Watcher) Register(namespace, name string) (*Subscription, error) {
	start := time.Now() // before the informers start: their first error is news to this waiter
	sp, err := w.space(namespace)
	if err != nil {
		return nil, err
	}
	c := make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, sp: sp, name: name, start: start}
	sp.mu.Lock()
	sp.waiters[name] = append(sp.waiters[name], s)
	sp.mu.Unlock()
	select {
	case <-sp.synced: // the first read: the cache may already hold the run
		s.wake()
	default: // the sync wakes every waiter
	}
	return s, nil
}

// Subscribe registers a waiter for the named PipelineRun, as Register does,
// and waits until the namespace's PipelineRun cache has synced, so that Get
// answers from a complete cache. It returns Err's error instead if the
// informers fail first, and ctx's if it ends first.
func (w *Watcher) Subscribe(ctx context.Context, namespace, name string) (*Subscription, error) {
	s, err := w.Register(namespace, name)
	if err != nil {
		return nil, err
	}
	check := time.NewTicker(time.Second) // a grace period ends without an event
	defer check.Stop()
	for {
		if err := s.Err(); err != nil {
			s.Close()
			return nil, err
		}
		select {
		case <-s.sp.synced:
			s.wake() // keep the first read for the caller
			return s, nil
		case <-s.c:
		case <-check.C:
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		}
	}
}

// Synced reports whether the namespace's PipelineRun cache has synced.
func (s *Subscription) Synced() bool {
	select {
	case <-s.sp.synced:
		return true
	default:
		return false
	}
}

// Err reports why the namespace's informers cannot deliver the run's
// changes, or nil. A Forbidden or Unauthorized LIST or WATCH, of
// pipelineruns or of taskruns, that failed since the Subscription was made
// gives a non-retryable ApplicationError of type ErrTypeForbidden naming
// the verb, the resource, the namespace and the fix. Any other failure
// (connection refused, a 5xx answer, a webhook that is down) gives a
// retryable error once it has lasted the Watcher's grace period
// (SetWatchErrorGrace) while the Subscription existed; until then client-go
// retries and Err is nil.
func (s *Subscription) Err() error {
	sp := s.sp
	now := time.Now()
	grace := time.Duration(sp.grace.Load())
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var late *informerFailure
	for _, resource := range []string{"pipelineruns", "taskruns"} {
		f := sp.failures[resource]
		switch {
		case f == nil:
		case f.err.refused() && !f.last.Before(s.start):
			return refusedError(f.err)
		case !f.err.refused() && now.Sub(later(f.since, s.start)) >= grace && late == nil:
			late = f
		}
	}
	if late != nil {
		return fmt.Errorf("the informer cannot %s %s in namespace %s, failing for %s: %w; client-go keeps retrying and the next attempt re-attaches",
			late.err.verb, late.err.resource, late.err.namespace, now.Sub(late.since).Round(time.Second), late.err.err)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// refusedError is the non-retryable error of a LIST or WATCH the API
// server refused.
func refusedError(e *informerError) error {
	fix := fmt.Sprintf("grant the worker's ServiceAccount list and watch on pipelineruns and taskruns in namespace %s (the Role in deploy/worker/rbac.yaml)", e.namespace)
	if apierrors.IsUnauthorized(e.err) {
		fix = "the API server did not accept the worker's credentials; check its kubeconfig or ServiceAccount token"
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("the API server refused to %s %s in namespace %s: %v; %s", e.verb, e.resource, e.namespace, e.err, fix),
		ErrTypeForbidden, nil)
}

// Close unregisters the waiter.
func (s *Subscription) Close() {
	sp := s.sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	ws := sp.waiters[s.name]
	for i, w := range ws {
		if w == s {
			ws[i] = ws[len(ws)-1]
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) == 0 {
		delete(sp.waiters, s.name)
	} else {
		sp.waiters[s.name] = ws
	}
}

// Get returns the run's cached state. The object is shared: do not modify it.
func (s *Subscription) Get() (*pipelinev1.PipelineRun, bool) {
	pr, err := s.sp.runs.Get(s.name)
	return pr, err == nil
}

// taskRun returns a cached TaskRun of the run's namespace.
func (s *Subscription) taskRun(name string) (*pipelinev1.TaskRun, bool) {
	tr, err := s.sp.tasks.Get(name)
	return tr, err == nil
}

// slimPipelineRun drops what awaiting never reads before the informer
// caches a run: managed fields, the inline pipeline spec, and all of the
// resolved pipeline spec in the status but the task names.
func slimPipelineRun(obj any) (any, error) {
	pr, ok := obj.(*pipelinev1.PipelineRun)
	if !ok {
		return obj, nil
	}
	pr.ManagedFields = nil
	pr.Spec.PipelineSpec = nil
	pr.Status.Provenance = nil
	if ps := pr.Status.PipelineSpec; ps != nil {
		slim := &pipelinev1.PipelineSpec{}
		for _, t := range ps.Tasks {
			slim.Tasks = append(slim.Tasks, pipelinev1.PipelineTask{Name: t.Name})
		}
		for _, t := range ps.Finally {
			slim.Finally = append(slim.Finally, pipelinev1.PipelineTask{Name: t.Name})
		}
		pr.Status.PipelineSpec = slim
	}
	return pr, nil
}

// slimTaskRun keeps a TaskRun's identity and conditions only.
func slimTaskRun(obj any) (any, error) {
	tr, ok := obj.(*pipelinev1.TaskRun)
	if !ok {
		return obj, nil
	}
	return &pipelinev1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: tr.Name, Namespace: tr.Namespace, UID: tr.UID,
			ResourceVersion: tr.ResourceVersion, Labels: tr.Labels,
		},
		Status: pipelinev1.TaskRunStatus{
			Status: tr.Status.Status,
			TaskRunStatusFields: pipelinev1.TaskRunStatusFields{
				PodName:        tr.Status.PodName,
				StartTime:      tr.Status.StartTime,
				CompletionTime: tr.Status.CompletionTime,
			},
		},
	}, nil
}

// listWatchNoStream is a ListWatch that opts out of client-go's streaming
// watch-list: its informers LIST, then WATCH. A watch-list must wait until
// the API server's watch cache has caught up with etcd, and for a resource
// with no recent writes the server answers "retry after 1s", which every
// new namespace's first waiter would pay. A LIST is answered at once.
type listWatchNoStream struct{ *cache.ListWatch }

// IsWatchListSemanticsUnSupported tells client-go's reflector not to use
// watch-list for this ListWatch.
func (listWatchNoStream) IsWatchListSemanticsUnSupported() bool { return true }

// managedInformer is an informer over the objects list and watch return,
// restricted to ManagedSelector, listing then watching (listWatchNoStream).
// Its failing LISTs and WATCHes are recorded in sp under resource, those
// client-go retries without telling its WatchErrorHandler (a WATCH refused
// a connection or throttled) too.
func managedInformer[L runtime.Object](
	sp *space, resource string,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	obj runtime.Object, resync time.Duration,
) cache.SharedIndexInformer {
	fail := func(ctx context.Context, verb string, err error) error {
		if ctx.Err() != nil || routine(err) {
			return err
		}
		ie := &informerError{verb: verb, resource: resource, namespace: sp.ns, err: err}
		sp.failed(ie)
		return ie
	}
	lw := listWatchNoStream{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = ManagedSelector
			l, err := list(ctx, o)
			if err != nil {
				return l, fail(ctx, "list", err)
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = ManagedSelector
			w, err := watchFn(ctx, o)
			if err != nil {
				return w, fail(ctx, "watch", err)
			}
			sp.watching(resource)
			return w, nil
		},
	}}
	return cache.NewSharedIndexInformer(lw, obj, resync, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}
