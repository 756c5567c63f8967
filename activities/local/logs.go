package local

import (
	"bufio"
	"errors"
	"io"
	"sync"
)

// liveLog serialises whole lines from concurrently running steps onto one
// writer, each line prefixed with "[task/step] ".
type liveLog struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (l *liveLog) writeLine(prefix string, line []byte) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf[:0], '[')
	l.buf = append(l.buf, prefix...)
	l.buf = append(l.buf, "] "...)
	l.buf = append(l.buf, line...)
	if len(line) == 0 || line[len(line)-1] != '\n' {
		l.buf = append(l.buf, '\n')
	}
	_, _ = l.w.Write(l.buf) // the live log is best effort; the step's file is the record
}

// copyLines reads r until EOF, writing every byte to file and every line
// to live. Lines longer than the buffer are split. It keeps reading after
// a write error (reported at the end), so that the step never blocks on a
// full pipe.
func copyLines(r io.Reader, file io.Writer, live *liveLog, prefix string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var werr error
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if werr == nil {
				_, werr = file.Write(line)
			}
			live.writeLine(prefix, line)
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return werr
		default:
			return errors.Join(err, werr)
		}
	}
}
