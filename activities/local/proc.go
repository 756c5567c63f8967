package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/activities/local/internal/nsinit"
)

// procSpec is one step process.
type procSpec struct {
	argv   []string
	env    []string
	dir    string
	log    io.Writer // the step's log file
	live   *liveLog  // may be nil
	prefix string    // "task/step" for the live log
	// onStart, if set, is called with the process's pid (its group's ID)
	// as soon as it has started; if it fails, the group is killed and
	// runProc returns its error.
	onStart func(pid int) error
	// sandbox, if set, runs the step in namespaces of its own; argv[0]
	// and dir are then looked up inside them.
	sandbox *sandbox
}

// drainTimeout bounds how long runProc waits for the output pipe to close
// after the step's process group is gone: a process that left the group
// (setsid) may still hold it.
const drainTimeout = 2 * time.Second

// runProc runs p in a process group of its own and returns its exit code
// (128+n for a process killed by signal n). When ctx ends first it kills
// the whole group and returns context.Cause(ctx). Whatever way the step
// ends, processes it left behind in its group (a backgrounded `sleep &`)
// are killed too, as they are when a step's container exits. An error
// starting the process (command not found, bad interpreter) is reported
// as exit code 127 with the error.
func runProc(ctx context.Context, p procSpec) (int, error) {
	var path string
	if p.sandbox == nil {
		// A missing working directory would fail the fork as if the
		// program were missing ("fork/exec /bin/sh: no such file or
		// directory").
		if p.dir != "" {
			if err := checkDir(p.dir); err != nil {
				return 127, err
			}
		}
		var err error
		if path, err = nsinit.LookPath(p.argv[0], p.env, p.dir); err != nil {
			return 127, err
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   p.argv,
		Env:    p.env,
		Dir:    p.dir,
		Stdout: w,
		Stderr: w,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// If the worker dies, its steps die with it; their own
			// children are left to the process group kill of a re-run
			// (see onStart and killLeftovers).
			Pdeathsig: syscall.SIGKILL,
		},
	}
	var ns *nsinit.Started
	if p.sandbox != nil {
		if ns, err = p.sandbox.wrap(cmd, p.argv, p.env, p.dir); err != nil {
			r.Close()
			w.Close()
			return 127, err
		}
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		if ns != nil {
			ns.Begin(false)
			return 127, fmt.Errorf("start in namespaces: %w", err)
		}
		if derr := checkDir(p.dir); p.dir != "" && derr != nil { // gone or unusable since
			return 127, derr
		}
		return 127, err
	}
	if ns != nil {
		ns.Begin(true)
	}
	w.Close()
	copied := make(chan error, 1)
	go func() { copied <- copyLines(r, p.log, p.live, p.prefix) }()
	pgid := cmd.Process.Pid
	var startErr error
	if p.onStart != nil {
		if startErr = p.onStart(pgid); startErr != nil {
			killGroup(pgid)
		}
	}
	// The group is killed from the context's goroutine when ctx ends; the
	// common path waits for the process here, without a handoff.
	stop := context.AfterFunc(ctx, func() { killGroup(pgid) })
	_ = cmd.Wait() // the exit status is in cmd.ProcessState
	var stopped error
	if !stop() { // ctx ended and the kill ran
		stopped = context.Cause(ctx)
	}
	killGroup(pgid)
	t := time.NewTimer(drainTimeout)
	select {
	case <-copied:
	case <-t.C:
		r.Close() // unblocks the reader
		<-copied
	}
	t.Stop()
	r.Close()
	if startErr != nil {
		return exitCode(cmd.ProcessState), startErr
	}
	if ns != nil {
		// What the namespace init could not do (a mount, the working
		// directory, the program) is a step that could not start.
		if ferr := ns.Failure(); ferr != nil && stopped == nil {
			return 127, ferr
		}
	}
	return exitCode(cmd.ProcessState), stopped
}

// checkDir reports why dir cannot be a process's working directory: it is
// missing, not a directory, or not searchable.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		return workingDirError(dir, err)
	case !fi.IsDir():
		return workingDirError(dir, syscall.ENOTDIR)
	}
	if err := syscall.Access(dir, 0x1 /* X_OK */); err != nil {
		return workingDirError(dir, err)
	}
	return nil
}

func killGroup(pgid int) {
	// ESRCH means the group is already empty.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// shebangArgv returns the argv that runs a script file the way the kernel
// does: "#!interpreter [one optional argument]" becomes interpreter, the
// argument, the file, then args. Running the interpreter rather than
// exec'ing the file avoids ETXTBSY races between writing scripts and
// forking in a multi-threaded process.
func shebangArgv(script, file string, args []string) []string {
	first, _, _ := strings.Cut(script, "\n")
	line := strings.TrimSpace(strings.TrimPrefix(first, "#!"))
	interp, arg := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		interp, arg = line[:i], strings.TrimSpace(line[i+1:])
	}
	argv := []string{interp}
	if arg != "" {
		argv = append(argv, arg)
	}
	argv = append(argv, file)
	return append(argv, args...)
}

// expandK8s expands $(VAR) references from vars and turns $$ into $, as the
// kubelet does for a container's command, args and env values; unknown
// references are left as they are.
func expandK8s(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
