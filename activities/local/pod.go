package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/container"

	"github.com/kiln-build/kiln/activities/local/internal/nsinit"
)

// podFS is what one attempt's steps and sidecars mount in their
// namespaces, as the containers of a TaskRun's pod do.
type podFS struct {
	// base are Tekton's own: /workspace, /tekton/home, /tekton/results,
	// /tekton/steps and /tekton/scripts.
	base       []nsinit.Mount
	workspaces []podMount
	volumes    map[string]podVolume
}

type podMount struct {
	name string
	m    nsinit.Mount
	// isolated workspaces are mounted only in the steps and sidecars
	// that list them (steps[].workspaces).
	isolated bool
}

type podVolume struct {
	dir, beneath string
	readOnly     bool
}

// errSidecarStopped is the cause with which sidecars are stopped once the
// steps are done.
var errSidecarStopped = errors.New("the steps have ended")

// podFS prepares the mounts of the attempt's pod: the task run's own
// directories, its workspaces (a readOnly one, and configMap, secret and
// projected ones, read-only) and its volumes, materialised under
// runs/<run>/volumes/<taskrun>/<volume>.
func (tr *taskRun) podFS(spec *pipelinev1.TaskSpec, wsPaths map[string]string) (*podFS, error) {
	x := tr.x
	p := &podFS{volumes: map[string]podVolume{}}
	for _, b := range []struct {
		kind, target string
		ro           bool
	}{
		{"work", podWorkspace, false},
		{"home", podHome, false},
		{"results", podResults, false},
		{"steps", podSteps, true},
		{"scripts", podScripts, true},
	} {
		p.base = append(p.base, nsinit.Mount{Source: tr.dir(b.kind), Beneath: x.dir, Target: b.target, ReadOnly: b.ro})
	}
	isolated := map[string]bool{}
	for _, s := range spec.Steps {
		for _, w := range s.Workspaces {
			isolated[w.Name] = true
		}
	}
	for _, s := range spec.Sidecars {
		for _, w := range s.Workspaces {
			isolated[w.Name] = true
		}
	}
	for _, b := range tr.bindings {
		dir, ok := wsPaths[b.Name]
		if !ok {
			continue
		}
		d := pipelinev1.WorkspaceDeclaration{Name: b.Name}
		if i := slices.IndexFunc(spec.Workspaces, func(d pipelinev1.WorkspaceDeclaration) bool { return d.Name == b.Name }); i >= 0 {
			d = spec.Workspaces[i]
		}
		beneath := x.dir
		if b.PersistentVolumeClaim != nil {
			beneath = filepath.Join(x.r.root, "volumes", b.PersistentVolumeClaim.ClaimName)
		}
		ro := d.ReadOnly || b.ConfigMap != nil || b.Secret != nil || b.Projected != nil
		p.workspaces = append(p.workspaces, podMount{
			name:     b.Name,
			m:        nsinit.Mount{Source: dir, Beneath: beneath, Target: d.GetMountPath(), ReadOnly: ro},
			isolated: isolated[b.Name],
		})
	}
	for _, v := range spec.Volumes {
		if !usableClaimName(v.Name) {
			return nil, fmt.Errorf("volume %q: not a usable directory name", v.Name)
		}
		dir := filepath.Join(tr.dir("volumes"), v.Name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		b := pipelinev1.WorkspaceBinding{ConfigMap: v.ConfigMap, Secret: v.Secret, Projected: v.Projected}
		if err := x.r.materialise(dir, b); err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		p.volumes[v.Name] = podVolume{dir: dir, beneath: x.dir, readOnly: b.ConfigMap != nil || b.Secret != nil || b.Projected != nil}
	}
	return p, nil
}

// mounts are the mounts of one step or sidecar, in p and its own
// volumeMounts.
func (p *podFS) mounts(s pipelinev1.Step) ([]nsinit.Mount, error) {
	out := slices.Clone(p.base)
	for _, w := range p.workspaces {
		m := w.m
		if w.isolated {
			i := slices.IndexFunc(s.Workspaces, func(u pipelinev1.WorkspaceUsage) bool { return u.Name == w.name })
			if i < 0 {
				continue
			}
			if mp := s.Workspaces[i].MountPath; mp != "" {
				m.Target = mp
			}
		}
		out = append(out, m)
	}
	for _, vm := range s.VolumeMounts {
		v, ok := p.volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q: no volume of that name", vm.Name)
		}
		src := v.dir
		if vm.SubPath != "" {
			if !filepath.IsLocal(vm.SubPath) {
				return nil, fmt.Errorf("volumeMount %q: subPath %q leaves the volume", vm.Name, vm.SubPath)
			}
			// The kubelet creates a missing subPath as a directory.
			if err := mkdirBeneath(v.dir, vm.SubPath); err != nil {
				return nil, fmt.Errorf("volumeMount %q: %w", vm.Name, err)
			}
			src = filepath.Join(v.dir, vm.SubPath)
		}
		out = append(out, nsinit.Mount{Source: src, Beneath: v.beneath, Target: vm.MountPath, ReadOnly: vm.ReadOnly || v.readOnly})
	}
	for _, m := range out {
		if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) == "/" {
			return nil, fmt.Errorf("mountPath %q: must be an absolute path other than /", m.Target)
		}
	}
	return out, nil
}

// mkdirBeneath creates rel under dir, refusing symbolic links on the way:
// a step may have left one there that points elsewhere on the host.
func mkdirBeneath(dir, rel string) error {
	p := dir
	for _, c := range strings.Split(filepath.Clean(rel), string(filepath.Separator)) {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link", p)
		}
	}
	return nil
}

// isolatedWorkspacePaths substitutes $(workspaces.W.path) in the steps and
// sidecars that mount W at a path of their own (steps[].workspaces), as
// Tekton's applyWorkspaceMountPath does before the declared path goes
// everywhere else.
func isolatedWorkspacePaths(spec *pipelinev1.TaskSpec) *pipelinev1.TaskSpec {
	spec = spec.DeepCopy()
	for i := range spec.Steps {
		for _, u := range spec.Steps[i].Workspaces {
			if u.MountPath != "" {
				container.ApplyStepReplacements(&spec.Steps[i], map[string]string{"workspaces." + u.Name + ".path": u.MountPath}, nil)
			}
		}
	}
	for i := range spec.Sidecars {
		for _, u := range spec.Sidecars[i].Workspaces {
			if u.MountPath != "" {
				container.ApplySidecarReplacements(&spec.Sidecars[i], map[string]string{"workspaces." + u.Name + ".path": u.MountPath}, nil)
			}
		}
	}
	return spec
}

// startSidecars starts the sidecars that have a command or script, each in
// namespaces of its own with the steps' mounts (so they share /workspace
// and the workspaces; the network is the host's, so they share
// localhost), and returns a function that stops them and waits until they
// are gone. Their output goes to logs/<task>/sidecar-<name>.log. Unlike
// Tekton, steps do not wait for sidecars to be ready.
func (tr *taskRun) startSidecars(ctx context.Context, sidecars []pipelinev1.Sidecar, dirs stepDirs) (stop func()) {
	if len(sidecars) == 0 {
		return func() {}
	}
	sctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	for _, sc := range sidecars {
		if sc.Script == "" && len(sc.Command) == 0 {
			continue // refused before the run starts
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := tr.container(sctx, sidecarStep(sc), "sidecar-"+sc.Name, dirs)
			if sctx.Err() == nil {
				tr.x.r.logger.Info("sidecar exited before the steps ended", "pipelinerun", tr.x.plan.pr.Name, "taskrun", tr.name, "sidecar", sc.Name, "exitCode", code, "error", err)
			}
		}()
	}
	return func() {
		cancel(errSidecarStopped)
		wg.Wait()
	}
}

// sidecarStep is a sidecar as the step it runs like.
func sidecarStep(sc pipelinev1.Sidecar) pipelinev1.Step {
	return pipelinev1.Step{
		Name: sc.Name, Image: sc.Image, Command: sc.Command, Args: sc.Args, WorkingDir: sc.WorkingDir,
		Env: sc.Env, EnvFrom: sc.EnvFrom, VolumeMounts: sc.VolumeMounts, Script: sc.Script, Workspaces: sc.Workspaces,
	}
}
