package local

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgroupsFile, in a run's directory, records the process group of every
// step the run started, so that a later attempt can end what a crashed
// worker left running. Each line is "start <pgid> <starttime>", appended as
// soon as the step's process exists, or "end <pgid> <starttime>", appended
// once runProc has killed the group; starttime is the group leader's, from
// /proc/<pid>/stat, and tells the group from a later one with the same ID.
//
// The lines are written, not fsynced: they must outlive the worker's
// process, which the page cache does, not the machine, after whose crash
// no step survives either.
const pgroupsFile = "pgroups"

// leftoverTimeout bounds how long a restart waits for the processes of an
// earlier attempt to die after SIGKILL.
const leftoverTimeout = 10 * time.Second

// procGroup is a recorded step process group.
type procGroup struct {
	pgid  int
	start uint64 // the leader's starttime, in clock ticks since boot
}

// stepGroup records one step's process group in a run's pgroups file.
type stepGroup struct {
	file string
	g    procGroup
}

// started is the step's procSpec.onStart: it records the group that pid
// leads. The process is runProc's unreaped child, so pid is not reused yet.
func (sg *stepGroup) started(pid int) error {
	st, err := readProcStat(pid)
	if err != nil {
		return fmt.Errorf("record process group %d: %w", pid, err)
	}
	sg.g = procGroup{pgid: pid, start: st.start}
	if err := appendLine(sg.file, fmt.Sprintf("start %d %d\n", pid, st.start)); err != nil {
		return fmt.Errorf("record process group %d: %w", pid, err)
	}
	return nil
}

// ended records that runProc killed the group: nothing of it is left to a
// later attempt. Failing to record it only makes a restart check the group.
func (sg *stepGroup) ended() {
	if sg.g.pgid != 0 {
		_ = appendLine(sg.file, fmt.Sprintf("end %d %d\n", sg.g.pgid, sg.g.start))
	}
}

func appendLine(file, line string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line) // one write: concurrent steps' lines do not mix
	return errors.Join(err, f.Close())
}

// openGroups returns the groups dir's pgroups file records as started and
// not ended.
func openGroups(dir string) ([]procGroup, error) {
	f, err := os.Open(filepath.Join(dir, pgroupsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var open []procGroup
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var op string
		var g procGroup
		if _, err := fmt.Sscanf(sc.Text(), "%s %d %d", &op, &g.pgid, &g.start); err != nil || g.pgid <= 1 {
			continue // a line torn by a crash
		}
		switch op {
		case "start":
			open = append(open, g)
		case "end":
			open = slices.DeleteFunc(open, func(o procGroup) bool { return o == g })
		}
	}
	return open, sc.Err()
}

// killLeftovers kills every process group that dir's pgroups file records
// as open and that still has a live member, and waits until none has.
//
// A group is taken to be the recorded one unless its ID now belongs to a
// live leader started at another time (the ID was reused). The kernel does
// not reuse an ID while any process is in the group it names, so a group
// whose leader is gone is the recorded one, unless all of its processes
// ended and an unrelated process, since then, got the ID, made a group of
// it and left it before this check: a risk that the "end" records confine
// to groups whose worker died. Groups of another user are left alone.
func killLeftovers(dir string) error {
	groups, err := openGroups(dir)
	if err != nil || len(groups) == 0 {
		return err
	}
	deadline := time.Now().Add(leftoverTimeout)
	for {
		live, err := liveGroups(groups)
		if err != nil {
			return err
		}
		if len(live) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process groups %v of an earlier attempt survive SIGKILL after %s", live, leftoverTimeout)
		}
		for _, pgid := range live {
			if err := syscall.Kill(-pgid, syscall.SIGKILL); errors.Is(err, syscall.EPERM) {
				groups = slices.DeleteFunc(groups, func(g procGroup) bool { return g.pgid == pgid })
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveGroups returns the IDs of the groups that are the recorded ones and
// have a member that is not a zombie.
func liveGroups(groups []procGroup) ([]int, error) {
	procs, err := scanProcs()
	if err != nil {
		return nil, err
	}
	var live []int
	for _, g := range groups {
		members, reused := 0, false
		for _, p := range procs {
			if p.pgrp != g.pgid {
				continue
			}
			if p.pid == g.pgid && p.start != g.start {
				reused = true
			}
			if p.state != 'Z' && p.state != 'X' {
				members++
			}
		}
		if members > 0 && !reused {
			live = append(live, g.pgid)
		}
	}
	return live, nil
}

// procStat is what /proc/<pid>/stat says of a process.
type procStat struct {
	pid   int
	state byte
	pgrp  int
	start uint64
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	st, ok := parseProcStat(string(b))
	if !ok {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return st, nil
}

// parseProcStat parses "pid (comm) state ppid pgrp ... starttime ...";
// comm may hold spaces and parentheses, so fields count from the last ")".
func parseProcStat(s string) (procStat, bool) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(s[end+1:]) // f[0] is field 3 (state)
	if len(f) < 20 || len(f[0]) == 0 {
		return procStat{}, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(s[:open]))
	pgrp, err2 := strconv.Atoi(f[2])
	start, err3 := strconv.ParseUint(f[19], 10, 64) // field 22
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, false
	}
	return procStat{pid: pid, state: f[0][0], pgrp: pgrp, start: start}, true
}

// scanProcs reads every process's stat; processes that exit meanwhile are
// left out.
func scanProcs() ([]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out, nil
}
