//go:build e2e

// Package devtest runs `kiln dev` (bin/kiln, with bin/temporal and
// bin/versitygw beside it) end to end, as a user would: the demo build to
// its manifest and mail, a second build against the running stack, its
// logs, a cancelled build whose step processes all die, Ctrl-C leaving
// nothing running or listening, and a restart that shows the earlier
// builds. `make test` runs it in a private network namespace
// (test/netns-run), so the default ports are free.
package devtest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/workflows"
)

// kilnDev is a running `kiln dev`.
type kilnDev struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startDev(t *testing.T, dir string, args ...string) *kilnDev {
	t.Helper()
	kiln := kilnBin(t)
	d := &kilnDev{t: t, done: make(chan struct{})}
	d.cmd = exec.Command(kiln, append([]string{"dev", "--dir", dir}, args...)...)
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
	}()
	go func() { d.cmd.Wait(); pw.Close(); close(d.done) }()
	t.Cleanup(func() {
		// Ctrl-C's signal first: kiln dev stops its steps and servers.
		d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("kiln dev output:\n%s", d.output())
		}
	})
	return d
}

func (d *kilnDev) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// waitFor waits until the output has a line containing s.
func (d *kilnDev) waitFor(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.output(), s) {
		select {
		case <-d.done:
			d.t.Fatalf("kiln dev exited before printing %q", s)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("kiln dev did not print %q within %v", s, timeout)
		}
	}
}

// interrupt sends Ctrl-C's signal and waits until kiln dev exits.
func (d *kilnDev) interrupt() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		d.t.Fatal("kiln dev did not stop within a minute of SIGINT")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Errorf("kiln dev exited with %d", code)
	}
}

// field returns what follows label on the first output line holding it
// and containing contains.
func (d *kilnDev) field(label, contains string) string {
	for _, l := range strings.Split(d.output(), "\n") {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, label); ok && strings.Contains(rest, contains) {
			return strings.TrimSpace(rest)
		}
	}
	d.t.Fatalf("no %q line with %q in:\n%s", label, contains, d.output())
	return ""
}

func kilnBin(t *testing.T) string {
	t.Helper()
	p, err := kubestack.Tool("kiln")
	if err != nil {
		t.Fatalf("%v: make test builds bin/kiln before this tier", err)
	}
	for _, tool := range []string{"temporal", "versitygw"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), tool)); err != nil {
			t.Fatalf("%s beside %s: %v", tool, p, err)
		}
	}
	return p
}

// kiln runs a kiln client command against the running kiln dev.
func kiln(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(kilnBin(t), args...)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS=127.0.0.1:7233")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// processesWith lists the processes whose command line contains all of
// words.
func processesWith(words ...string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		match := true
		for _, w := range words {
			match = match && strings.Contains(cmdline, w)
		}
		if match {
			out = append(out, e.Name()+": "+cmdline)
		}
	}
	return out
}

// listeners counts the listening TCP sockets of this network namespace.
func listeners(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(l); len(fs) > 3 && fs[3] == "0A" {
				out = append(out, fs[1])
			}
		}
	}
	return out
}

func TestKilnDev(t *testing.T) {
	if l := listeners(t); len(l) > 0 {
		t.Fatalf("sockets listen before kiln dev starts (run this in test/netns-run): %v", l)
	}
	dir := t.TempDir()
	d := startDev(t, dir)

	// 1. The demo build completes and kiln dev prints where its results are.
	d.waitFor("kiln dev keeps running", 5*time.Minute)
	out := d.output()
	for _, want := range []string{"kiln dev: ready", "demo build build/dev/dev.", "succeeded", "Temporal UI"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	ui := d.field("Temporal UI", "/workflows/")
	resp, err := http.Get(ui)
	if err != nil {
		t.Fatalf("the UI link %s: %v", ui, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the UI link %s answered %s", ui, resp.Status)
	}
	// The S3 server keeps the bucket as a directory: the printed URI is a
	// file there.
	releases := filepath.Join(dir, "s3", "releases")
	setKey, ok := strings.CutPrefix(d.field("manifest", "s3://"), "s3://releases/")
	if !ok || !strings.Contains(out, filepath.Join(releases, setKey)) {
		t.Fatalf("the manifest lines do not name s3://releases/… and its file:\n%s", out)
	}
	var set storage.ManifestSet
	readJSON(t, filepath.Join(releases, setKey), &set)
	if len(set.Manifests) != len(demoFlavours) {
		t.Fatalf("manifest set %s lists %d manifests, want the %d buildable flavours", setKey, len(set.Manifests), len(demoFlavours))
	}
	demoID := d.field("demo build", "build/dev/")
	version := strings.TrimPrefix(demoID, "build/dev/")
	demoCommit := strings.Repeat("0", 40)
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		demoCommit = strings.TrimSpace(string(head)) // kiln dev builds the checkout's commit
	}
	checkDemoBuild(t, releases, "kiln-dev/", set, demoID, version, demoCommit)
	mailFile := d.field("mail  ", ".eml")
	mail, err := os.ReadFile(mailFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(mail, []byte("you@kiln.localhost")) || !bytes.Contains(mail, []byte("Succeeded")) {
		t.Errorf("mail %s:\n%s", mailFile, mail)
	}

	// 2. A second build against the running kiln dev, and its logs.
	commit := strings.Repeat("ab", 20)
	if out, err := kiln(t, "run", "--repo", "https://example.com/os.git", "--branch", "dev", "--commit", commit,
		"--version", "e2e.2", "--target", "build", "--target", "manifest", "--wait"); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("kiln run: %v\n%s", err, out)
	}
	logs, err := kiln(t, "logs", "build/dev/e2e.2", "--dir", filepath.Join(dir, "local"), "--task", "build-image")
	if err != nil || !strings.Contains(logs, "built kvm-gardener_prod-arm64") {
		t.Errorf("kiln logs: %v\n%s", err, logs)
	}
	// The same commit and version built again (another build ID: another
	// branch) runs nothing: every flavour's Garden Linux manifest is
	// found, the reordered cnames included.
	if out, err := kiln(t, "run", "--repo", "https://example.com/os.git", "--branch", "again", "--commit", commit,
		"--version", "e2e.2", "--target", "build", "--target", "manifest", "--wait"); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("kiln run again: %v\n%s", err, out)
	}
	again := demoProgress(t, "build/again/e2e.2")
	for _, f := range again.Flavours {
		if f.State != workflows.StateSkipped || !f.Reused || !strings.Contains(f.Reason, "built before: manifest kiln-dev/meta/singles/") {
			t.Errorf("rebuilt flavour %s: %+v, want skipped as built before", f.Name, f)
		}
		for _, ph := range f.Phases {
			if ph.PipelineRun != "" {
				t.Errorf("flavour %s ran %s again", f.Name, ph.PipelineRun)
			}
		}
	}

	// 3. A cancelled build kills its steps, grandchildren included: each
	// image step sleeps (a child of the step's shell) for a time no other
	// process here uses.
	delay := fmt.Sprint(100000 + time.Now().UnixNano()%100000)
	sleeping := func() int { return len(processesWith("sleep " + delay)) }
	if out, err := kiln(t, "run", "--repo", "https://example.com/os.git", "--branch", "dev", "--commit", commit,
		"--version", "e2e.3", "--target", "build", "--param", "delay="+delay); err != nil {
		t.Fatalf("kiln run: %v\n%s", err, out)
	}
	// maxParallel 4: four of the six image steps at once.
	waitUntil(t, time.Minute, "4 image steps sleeping", func() bool { return sleeping() == 4 })
	if out, err := kiln(t, "cancel", "build/dev/e2e.3"); err != nil {
		t.Fatalf("kiln cancel: %v\n%s", err, out)
	}
	waitUntil(t, 30*time.Second, "no step left after the cancel", func() bool { return sleeping() == 0 })
	waitUntil(t, 30*time.Second, "the build cancelled", func() bool {
		out, _ := kiln(t, "status", "build/dev/e2e.3")
		return strings.HasPrefix(out, "state: Cancelled")
	})

	// 4. Ctrl-C stops everything: no process of it runs, nothing listens.
	d.interrupt()
	if !strings.Contains(d.output(), "kiln dev: stopped") {
		t.Errorf("no stop message")
	}
	if p := processesWith(dir); len(p) > 0 {
		t.Errorf("processes left running: %v", p)
	}
	if l := listeners(t); len(l) > 0 {
		t.Errorf("sockets left listening: %v", l)
	}

	// 5. A restart finds the earlier builds.
	d = startDev(t, dir, "--no-demo")
	d.waitFor("kiln dev keeps running", time.Minute)
	list, err := kiln(t, "list")
	if err != nil || !strings.Contains(list, "build/dev/dev.") || !strings.Contains(list, "build/dev/e2e.2") {
		t.Errorf("kiln list after a restart: %v\n%s", err, list)
	}
	d.interrupt()
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// checkTarball checks that the promoted image is a gzipped tarball with the
// demo's os-release, and has the reported checksum.
func checkTarball(t *testing.T, path, sha string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("promoted image: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no etc/os-release", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h.Name, "etc/os-release") {
			b, _ := io.ReadAll(tr)
			if !bytes.Contains(b, []byte("GARDENLINUX_CNAME=")) {
				t.Errorf("os-release:\n%s", b)
			}
			break
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		t.Errorf("the promoted image %s has sha256 %s, its manifest says %s", path, got, sha)
	}
}
