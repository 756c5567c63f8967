package local

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kiln-build/kiln/activities/local/internal/nsinit"
)

// Values of Options.Isolation.
const (
	// IsolationNamespaces runs each step in user, mount and PID
	// namespaces of its own, with the file system of a pod's container.
	IsolationNamespaces = "namespaces"
	// IsolationNone runs steps on the host as they are, in the worker's
	// file system.
	IsolationNone = "none"
)

// Paths of a task's pod, as Tekton mounts them.
const (
	podWorkspace = "/workspace"
	podHome      = "/tekton/home"
	podResults   = "/tekton/results"
	podScripts   = "/tekton/scripts"
	podSteps     = "/tekton/steps"
)

// probeNamespaces reports whether steps can start in namespaces, by
// starting the namespace init on an empty directory under root; tests
// replace it.
var probeNamespaces = func(root string) error {
	dir := filepath.Join(root, "root")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return runInit(nsinit.Spec{Root: dir, Probe: true})
}

func runInit(spec nsinit.Spec) error {
	cmd := &exec.Cmd{SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}}
	ns, err := nsinit.Command(cmd, spec)
	if err != nil {
		return err
	}
	err = cmd.Start()
	ns.Begin(err == nil)
	if err != nil {
		return err
	}
	werr := cmd.Wait()
	if ferr := ns.Failure(); ferr != nil {
		return ferr
	}
	return werr
}

// userNamespaceSysctls are the settings that forbid unprivileged user
// namespaces, with the value that does.
var userNamespaceSysctls = []struct{ file, name, forbids, allows string }{
	{"/proc/sys/kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone", "0", "1"},
	{"/proc/sys/user/max_user_namespaces", "user.max_user_namespaces", "0", "15000"},
	{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "kernel.apparmor_restrict_unprivileged_userns", "1", "0"},
}

// namespaceError explains a failed probe: what is missing, the settings
// of this machine that forbid it, and the two ways out.
func namespaceError(err error) error {
	var set []string
	for _, s := range userNamespaceSysctls {
		if b, rerr := os.ReadFile(s.file); rerr == nil && strings.TrimSpace(string(b)) == s.forbids {
			set = append(set, fmt.Sprintf("%s=%s (set %s=%s)", s.name, s.forbids, s.name, s.allows))
		}
	}
	found := ""
	if len(set) > 0 {
		found = "; this machine has " + strings.Join(set, ", ")
	}
	return fmt.Errorf("isolation %q: steps run in a user namespace of their own, which this machine does not allow: %w%s. "+
		"Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 where that setting exists, "+
		"user.max_user_namespaces above 0, and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0), "+
		"or set isolation %q to run steps on the host, unisolated",
		IsolationNamespaces, err, found, IsolationNone)
}

// sandbox is the file system of one step's (or sidecar's) namespaces.
type sandbox struct {
	root   string   // an empty directory for the new root
	hide   []string // the runner's root, so that no step sees other runs
	mounts []nsinit.Mount
}

// wrap makes cmd start its program in the sandbox's namespaces; argv, env
// and dir are the program's, as seen inside.
func (s *sandbox) wrap(cmd *exec.Cmd, argv, env []string, dir string) (*nsinit.Started, error) {
	return nsinit.Command(cmd, nsinit.Spec{Root: s.root, Hide: s.hide, Mounts: s.mounts, Argv: argv, Env: env, Dir: dir})
}
