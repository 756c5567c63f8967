// Package nsinit starts a process in namespaces of its own, with the file
// system a pod's container would see: the host's directories, writable
// but ephemeral (overlays whose upper directories die with the process;
// read-only binds where the kernel has no overlays in user namespaces),
// a private /tmp, /dev and /proc, and the given directories bound at the
// given paths.
//
// Command turns an exec.Cmd into one that re-executes the running binary
// (/proc/self/exe) in a new user, mount and PID namespace. This package's
// init function recognises the re-executed process by its environment,
// builds the file system, and runs the real program as the only child of
// the namespace's PID 1; it never returns to the binary's main. So any
// binary that links this package (every binary that links
// activities/local) can start such processes, test binaries included,
// without calling anything from main. The package imports nothing but the
// standard library and x/sys, so the re-executed binary runs little of its
// own initialisation before the init takes over.
//
// When PID 1 exits, with its program or because it was killed, the kernel
// kills every process left in the namespace: nothing a program starts
// outlives it, whatever process group or session it moves to.
package nsinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envVar marks the re-executed init; its value is the protocol version.
const envVar = "KILN_NSINIT"

// Files the init inherits: the spec to read, and where it reports why it
// could not start the program.
const (
	specFD  = 3
	errorFD = 4
)

// ExitCannotStart is the init's exit code when it could not build the file
// system or start the program, as a shell's for a command not found.
const ExitCannotStart = 127

// Mount is a directory (or file) bound into the new root.
type Mount struct {
	// Source is the host path to bind. It must lie under Beneath once
	// symbolic links are resolved: a link a program left there cannot
	// make a later mount expose another host directory.
	Source  string
	Beneath string
	// Target is the absolute path in the new root. A missing target is
	// created (in the overlay, not on the host), which fails only under a
	// host directory bound read-only.
	Target   string
	ReadOnly bool
}

// Spec is what the init builds and runs.
type Spec struct {
	// Root is an empty host directory on which the new root (a tmpfs) is
	// mounted, privately.
	Root string
	// Hide are host directories that appear empty in the new root.
	Hide []string
	// Mounts are bound in order of their targets' depth.
	Mounts []Mount
	// Argv, Env and Dir are the program's. Argv[0] is looked up in Env's
	// PATH inside the new root; a missing Dir is created, as a container
	// runtime creates a missing working directory.
	Argv []string
	Env  []string
	Dir  string
	// Probe builds the file system and exits 0 without running anything.
	Probe bool
}

// Started is a Command's process after Start.
type Started struct {
	spec  []byte
	specW *os.File
	errR  *os.File
	child []*os.File // the init's ends, closed once it has them
}

// Command makes cmd run spec in new namespaces instead of cmd.Path: it
// sets cmd's Path, Args, Env, Dir, ExtraFiles and the namespace fields of
// SysProcAttr (keeping the others, such as Setpgid and Pdeathsig). Call
// Started.Begin after cmd.Start and Started.Failure after cmd.Wait.
//
// Processes in the namespace run as root of the user namespace, which is
// the caller's user on the host: what they create in bound directories is
// the caller's.
func Command(cmd *exec.Cmd, spec Spec) (*Started, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, err
	}
	cmd.Path = "/proc/self/exe"
	cmd.Args = []string{"kiln-nsinit"}
	cmd.Env = []string{envVar + "=1"}
	cmd.Dir = ""
	cmd.ExtraFiles = []*os.File{specR, errW} // fds 3 and 4
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	a := cmd.SysProcAttr
	a.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	a.GidMappingsEnableSetgroups = false
	return &Started{spec: b, specW: specW, errR: errR, child: []*os.File{specR, errW}}, nil
}

// Begin hands the spec to the started init, or releases the pipes if
// cmd.Start failed (started false).
func (s *Started) Begin(started bool) {
	for _, f := range s.child {
		f.Close()
	}
	if !started {
		s.specW.Close()
		s.errR.Close()
		return
	}
	go func() {
		// An init that died early leaves EPIPE, which Wait reports.
		_, _ = s.specW.Write(s.spec)
		s.specW.Close()
	}()
}

// Failure returns why the init could not start the program, or nil if it
// did. Call it once the init has exited.
func (s *Started) Failure() error {
	defer s.errR.Close()
	b, _ := io.ReadAll(s.errR)
	if len(b) == 0 {
		return nil
	}
	return errors.New(string(b))
}

func init() {
	if os.Getenv(envVar) == "" {
		return
	}
	os.Exit(run())
}

// run is the init: PID 1 of the new namespaces.
func run() int {
	report := os.NewFile(errorFD, "errors")
	fail := func(err error) int {
		_, _ = report.WriteString(err.Error())
		return ExitCannotStart
	}
	syscall.CloseOnExec(specFD)
	syscall.CloseOnExec(errorFD)
	var spec Spec
	if err := json.NewDecoder(os.NewFile(specFD, "spec")).Decode(&spec); err != nil {
		return fail(fmt.Errorf("namespace init: read spec: %w", err))
	}
	if err := setup(&spec); err != nil {
		return fail(err)
	}
	if spec.Probe {
		return 0
	}
	if spec.Dir != "" {
		if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
			return fail(workingDirError(spec.Dir, err))
		}
		if err := syscall.Access(spec.Dir, 0x1 /* X_OK */); err != nil {
			return fail(workingDirError(spec.Dir, err))
		}
	}
	path, err := LookPath(spec.Argv[0], spec.Env, spec.Dir)
	if err != nil {
		return fail(err)
	}
	pid, err := syscall.ForkExec(path, spec.Argv, &syscall.ProcAttr{
		Dir: spec.Dir, Env: spec.Env, Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		return fail(&fs.PathError{Op: "fork/exec", Path: path, Err: err})
	}
	// Reap every orphan until the program exits; returning then makes the
	// kernel kill what is left.
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return fail(fmt.Errorf("namespace init: wait: %w", err))
		case wpid != pid:
			continue
		case ws.Signaled():
			return 128 + int(ws.Signal())
		default:
			return ws.ExitStatus()
		}
	}
}

// setup builds the new root and enters it.
func setup(spec *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("namespace init: make mounts private: %w", err)
	}
	root := spec.Root
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("namespace init: mount the new root: %w", err)
	}
	ours := map[string]bool{"proc": true, "dev": true, "sys": true, "tmp": true, "workspace": true, "tekton": true}
	for _, m := range spec.Mounts {
		if top := strings.Trim(m.Target, "/"); !strings.Contains(top, "/") {
			ours[top] = true
		}
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return fmt.Errorf("namespace init: %w", err)
	}
	// Upper directories of the overlays, on a tmpfs detached once the
	// root has changed: what a program writes there dies with it.
	upper := filepath.Join(root, ".upper")
	if err := os.Mkdir(upper, 0o700); err != nil {
		return fmt.Errorf("namespace init: %w", err)
	}
	if err := unix.Mount("tmpfs", upper, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=700"); err != nil {
		return fmt.Errorf("namespace init: mount the overlays' tmpfs: %w", err)
	}
	subs, err := submounts(append([]string{root}, spec.Hide...))
	if err != nil {
		return fmt.Errorf("namespace init: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if ours[name] {
			continue
		}
		dst := filepath.Join(root, name)
		if e.IsDir() && overlayHost("/"+name, dst, filepath.Join(upper, name), subs) == nil {
			continue
		}
		if err := bindHost("/"+name, dst, e.Type()); err != nil {
			return fmt.Errorf("namespace init: bind the host's /%s: %w", name, err)
		}
	}
	if err := mountSpecial(root); err != nil {
		return fmt.Errorf("namespace init: %w", err)
	}
	for _, h := range spec.Hide {
		p := filepath.Join(root, h)
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
			return fmt.Errorf("namespace init: hide %s: %w", h, err)
		}
	}
	// Sources are opened before the root changes, beneath their
	// directories; they are bound through /proc/self/fd afterwards.
	mounts := append([]Mount(nil), spec.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(filepath.Clean(mounts[i].Target), "/") < strings.Count(filepath.Clean(mounts[j].Target), "/")
	})
	fds := make([]int, len(mounts))
	for i, m := range mounts {
		fd, err := openBeneath(m.Beneath, m.Source)
		if err != nil {
			return fmt.Errorf("mount %s: %w", m.Target, err)
		}
		fds[i] = fd
	}
	old := filepath.Join(root, ".oldroot")
	if err := os.Mkdir(old, 0o700); err != nil {
		return fmt.Errorf("namespace init: %w", err)
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("namespace init: pivot_root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("namespace init: %w", err)
	}
	for i, m := range mounts {
		if err := bindFD(fds[i], m); err != nil {
			return fmt.Errorf("mount %s: %w", m.Target, err)
		}
		unix.Close(fds[i])
	}
	for _, d := range []string{"/.oldroot", "/.upper"} {
		if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("namespace init: detach %s: %w", d, err)
		}
		if err := os.Remove(d); err != nil {
			return fmt.Errorf("namespace init: %w", err)
		}
	}
	return nil
}

// overlayHost mounts the host's directory src at dst as an overlay whose
// writes go to a fresh upper directory, so that it is writable and
// ephemeral, as a container's root file system is; the mounts under src
// are bound again on top, read-only. It fails, leaving nothing to undo
// but an empty dst, where the kernel has no overlays in user namespaces
// (before Linux 5.11) or no user xattrs on tmpfs (before 6.6).
func overlayHost(src, dst, upper string, subs []string) error {
	if strings.ContainsAny(src, ",:\\") {
		return errors.New("path unusable in overlay options")
	}
	for _, d := range []string{dst, upper, upper + "/u", upper + "/w"} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	opts := "lowerdir=" + src + ",upperdir=" + upper + "/u,workdir=" + upper + "/w,userxattr"
	if err := unix.Mount("overlay", dst, "overlay", 0, opts); err != nil {
		return err
	}
	var bound []string
	for _, m := range subs { // parents first
		if !strings.HasPrefix(m, src+"/") || slices.ContainsFunc(bound, func(b string) bool { return strings.HasPrefix(m, b+"/") }) {
			continue
		}
		target := filepath.Join(dst, strings.TrimPrefix(m, src))
		err := unix.Mount(m, target, "", unix.MS_BIND|unix.MS_REC, "")
		if err == nil {
			err = readOnly(target)
		}
		if err != nil {
			_ = unix.Unmount(dst, unix.MNT_DETACH)
			return fmt.Errorf("bind %s: %w", m, err)
		}
		bound = append(bound, m)
	}
	return nil
}

// submounts lists this namespace's mount points, parents first, leaving
// out those at or under skip.
func submounts(skip []string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMountinfo(f[4])
		if slices.ContainsFunc(skip, func(s string) bool { return p == s || strings.HasPrefix(p, s+"/") }) {
			continue
		}
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") < strings.Count(out[j], "/") })
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// bindHost binds one of the host's top-level entries into the new root,
// read-only; a symbolic link is copied.
func bindHost(src, dst string, typ fs.FileMode) error {
	switch {
	case typ&fs.ModeSymlink != 0:
		l, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(l, dst)
	case typ.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case typ.IsRegular():
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return err
		}
	default:
		return nil // sockets and devices at the top level are left out
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return readOnly(dst)
}

// readOnly makes the mount at path and every mount under it read-only.
func readOnly(path string) error {
	err := unix.MountSetattr(unix.AT_FDCWD, path, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	// Before Linux 5.12: the top mount only, keeping the flags the
	// kernel locks in a user namespace.
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	return unix.Mount("", path, "", flags, "")
}

// mountSpecial mounts /proc, /sys, /dev and /tmp in the new root, and
// makes /tekton.
func mountSpecial(root string) error {
	p := func(s string) string { return filepath.Join(root, s) }
	for _, d := range []string{"proc", "sys", "dev", "tmp", "tekton"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			return err
		}
	}
	// A proc of the new PID namespace; where the kernel refuses one (a
	// container whose /proc has masked paths), the host's.
	if err := unix.Mount("proc", p("proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		if err := unix.Mount("/proc", p("proc"), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("mount /proc: %w", err)
		}
	}
	if err := unix.Mount("/sys", p("sys"), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind /sys: %w", err)
	}
	if err := readOnly(p("sys")); err != nil {
		return fmt.Errorf("bind /sys: %w", err)
	}
	if err := unix.Mount("tmpfs", p("tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	if fi, err := os.Stat(p("var/tmp")); err == nil && fi.IsDir() {
		if err := unix.Mount("tmpfs", p("var/tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("mount /var/tmp: %w", err)
		}
	}
	// A /dev of the usual devices, as a container runtime makes it.
	dev := p("dev")
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if _, err := os.Stat("/dev/" + d); err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dev, d), nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, filepath.Join(dev, d), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("tmpfs", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount /dev/shm: %w", err)
	}
	if unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") == nil {
		_ = os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx"))
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// openBeneath opens source as an O_PATH file, refusing a path that leaves
// beneath through a symbolic link or "..".
func openBeneath(beneath, source string) (int, error) {
	rel, err := filepath.Rel(beneath, source)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return -1, fmt.Errorf("source %s is not under %s", source, beneath)
	}
	dir, err := unix.Open(beneath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: beneath, Err: err}
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ENOSYS) { // before Linux 5.6
		real, err := filepath.EvalSymlinks(source)
		if err != nil {
			return -1, err
		}
		if r, err := filepath.Rel(beneath, real); err != nil || !filepath.IsLocal(r) && r != "." {
			return -1, fmt.Errorf("source %s leaves %s", source, beneath)
		}
		fd, err = unix.Open(real, unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if errors.Is(err, unix.EXDEV) {
			return -1, fmt.Errorf("source %s leaves %s through a symbolic link", source, beneath)
		}
		return -1, &fs.PathError{Op: "open", Path: source, Err: err}
	}
	return fd, nil
}

// bindFD binds the opened source at m.Target in the new root.
func bindFD(fd int, m Mount) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	target := filepath.Clean(m.Target)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return cause(err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return cause(err)
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return cause(err)
		}
		f.Close()
	}
	if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(fd), target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if m.ReadOnly {
		return readOnly(target)
	}
	return nil
}

// cause strips a path error to its cause, with the path that failed
// when it is not the target itself.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// workingDirError names dir as the working directory that could not be
// created or entered, with the cause alone, as activities/local does.
func workingDirError(dir string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("working directory %s: %w", dir, err)
}

// LookPath finds file as a container runtime would: a name with a slash is
// used as it is (relative to dir); any other name is searched in the PATH
// of env.
func LookPath(file string, env []string, dir string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: %w", file, errors.New("executable file not found in $PATH"))
}
