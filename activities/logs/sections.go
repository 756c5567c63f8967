package logs

import (
	"io"
	"time"
)

// Section is one container's (or, on the local executor, one step's) log
// in an archived object.
type Section struct {
	// Name is shown in the section's header line: "==> Name <==".
	Name string
	// Open opens the log when the sections before it are drained. It
	// returns the stream, or, with a nil stream and no error, a note that
	// stands in the section's place (such as "kiln: no log: …").
	Open func() (io.ReadCloser, string, error)
}

// NewReader reads the sections one after the other, each under its
// header line, with a newline added after a log that does not end with
// one. It opens one log at a time and holds none in memory; this is the
// format of every archived log, whichever executor ran the task.
func NewReader(secs []Section) io.ReadCloser { return &sectionReader{secs: secs} }

type sectionReader struct {
	secs    []Section
	cur     io.ReadCloser
	pending []byte // a header, a note or a newline, sent before reading on
	last    byte   // the current log's last byte so far
}

func (r *sectionReader) Read(b []byte) (int, error) {
	for {
		if len(r.pending) > 0 {
			n := copy(b, r.pending)
			r.pending = r.pending[n:]
			return n, nil
		}
		if r.cur != nil {
			n, err := r.cur.Read(b)
			if n > 0 {
				r.last = b[n-1]
			}
			switch {
			case err == io.EOF:
				r.cur.Close()
				r.cur = nil
				if r.last != '\n' {
					r.pending = []byte{'\n'}
				}
			case err != nil:
				return n, err
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if len(r.secs) == 0 {
			return 0, io.EOF
		}
		s := r.secs[0]
		r.secs = r.secs[1:]
		r.pending, r.last = []byte("==> "+s.Name+" <==\n"), '\n'
		rc, note, err := s.Open()
		switch {
		case err != nil:
			return 0, err
		case rc == nil:
			r.pending = append(r.pending, note+"\n"...)
		default:
			r.cur = rc
		}
	}
}

// Close closes the open log, if any.
func (r *sectionReader) Close() error {
	if r.cur == nil {
		return nil
	}
	err := r.cur.Close()
	r.cur = nil
	return err
}

// CountingReader passes r through and calls report with the bytes read so
// far about every interval, for heartbeats while a log streams.
func CountingReader(r io.Reader, interval time.Duration, report func(n int64)) io.Reader {
	return &countingReader{r: r, every: interval, report: report}
}

type countingReader struct {
	r      io.Reader
	n      int64
	every  time.Duration
	last   time.Time
	report func(n int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if now := time.Now(); now.Sub(c.last) >= c.every {
		c.last = now
		c.report(c.n)
	}
	return n, err
}
