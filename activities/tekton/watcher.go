package tekton

import (
	"context"
	"fmt"
	"sync"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
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
// Subscriptions by PipelineRun name. A Watcher is safe for concurrent use by
// multiple goroutines; create one per worker process and Close it on
// shutdown.
type Watcher struct {
	client versioned.Interface
	resync time.Duration

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
	return &Watcher{client: client, resync: resync, spaces: map[string]*space{}, stop: make(chan struct{})}
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

	mu      sync.Mutex
	waiters map[string][]*Subscription
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
	runs := w.client.TektonV1().PipelineRuns(ns)
	tasks := w.client.TektonV1().TaskRuns(ns)
	runInf := managedInformer(runs.List, runs.Watch, &pipelinev1.PipelineRun{}, w.resync)
	taskInf := managedInformer(tasks.List, tasks.Watch, &pipelinev1.TaskRun{}, w.resync)
	sp := &space{
		ns:      ns,
		runs:    listers.NewPipelineRunLister(runInf.GetIndexer()).PipelineRuns(ns),
		tasks:   listers.NewTaskRunLister(taskInf.GetIndexer()).TaskRuns(ns),
		synced:  make(chan struct{}),
		waiters: map[string][]*Subscription{},
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
			close(sp.synced)
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
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
	sp.mu.Unlock()
}

// Subscription is one waiter on one PipelineRun. C receives a value whenever
// the run or one of its TaskRuns may have changed, and once at the start;
// read the state with Get and Tasks. Close it when done.
type Subscription struct {
	C    <-chan struct{}
	c    chan struct{}
	sp   *space
	name string
}

// Subscribe registers a waiter for the named PipelineRun and waits until the
// namespace's informers have synced, so that Get answers from a complete
// cache: a run that finished while the worker was down is seen at once.
func (w *Watcher) Subscribe(ctx context.Context, namespace, name string) (*Subscription, error) {
	sp, err := w.space(namespace)
	if err != nil {
		return nil, err
	}
	c := make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, sp: sp, name: name}
	sp.mu.Lock()
	sp.waiters[name] = append(sp.waiters[name], s)
	sp.mu.Unlock()
	select {
	case <-sp.synced:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	select { // the first read: the cache may already hold the run
	case c <- struct{}{}:
	default: // an event already queued one
	}
	return s, nil
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
func managedInformer[L runtime.Object](
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	obj runtime.Object, resync time.Duration,
) cache.SharedIndexInformer {
	lw := listWatchNoStream{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = ManagedSelector
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = ManagedSelector
			return watchFn(ctx, o)
		},
	}}
	return cache.NewSharedIndexInformer(lw, obj, resync, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}
