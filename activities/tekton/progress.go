package tekton

import (
	"slices"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"knative.dev/pkg/apis"
)

// progressOf derives a run's Progress from its status and its cached
// TaskRuns: every pipeline task in pipeline order, then finally tasks.
func progressOf(sub *Subscription, pr *pipelinev1.PipelineRun, dashboard string) Progress {
	p := Progress{Namespace: pr.Namespace, PipelineRun: pr.Name, Dashboard: dashboard}
	if c := pr.Status.GetCondition(apis.ConditionSucceeded); c != nil {
		p.Reason = c.Reason
	}
	index := map[string]int{}
	add := func(t TaskState) {
		if i, ok := index[t.Name]; ok {
			p.Tasks[i] = t
			return
		}
		index[t.Name] = len(p.Tasks)
		p.Tasks = append(p.Tasks, t)
	}
	if ps := pr.Status.PipelineSpec; ps != nil {
		for _, t := range slices.Concat(ps.Tasks, ps.Finally) {
			add(TaskState{Name: t.Name, State: TaskPending})
		}
	}
	for _, ref := range pr.Status.ChildReferences {
		t := TaskState{Name: ref.PipelineTaskName, TaskRun: ref.Name, State: TaskPending}
		if tr, ok := sub.taskRun(ref.Name); ok {
			t.State, t.Reason, t.Message = taskRunState(tr)
		}
		add(t)
	}
	for _, s := range pr.Status.SkippedTasks {
		add(TaskState{Name: s.Name, State: TaskSkipped, Reason: string(s.Reason)})
	}
	return p
}

func taskRunState(tr *pipelinev1.TaskRun) (state, reason, message string) {
	c := tr.Status.GetCondition(apis.ConditionSucceeded)
	switch {
	case c == nil:
		return TaskPending, "", ""
	case c.IsTrue():
		return TaskSucceeded, c.Reason, ""
	case c.IsFalse():
		return TaskFailed, c.Reason, c.Message
	default:
		return TaskRunning, c.Reason, ""
	}
}

func (p Progress) equal(q Progress) bool {
	return p.Reason == q.Reason && slices.Equal(p.Tasks, q.Tasks)
}
