package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Static is a fixed list of backends.
type Static []Endpoint

// Run reports the list once and waits for ctx.
func (s Static) Run(ctx context.Context, update func([]Endpoint)) error {
	update(s)
	<-ctx.Done()
	return nil
}

// File is a backend list in a file, one backend spec (see ParseEndpoint) a
// line, '#' starting a comment, re-read every Interval (default 1 s) so that
// backends are added and removed by editing it. A file that cannot be read
// or parsed leaves the list as it was (logged). A changed list takes effect
// once two reads in a row agree (the second a moment after the first), so
// that a file caught while it is being rewritten (truncated, half written)
// never empties or cuts the list.
type File struct {
	Path     string
	Interval time.Duration
	Logger   *slog.Logger
}

// ReadEndpoints parses a backend list: one spec a line, '#' comments.
func ReadEndpoints(data []byte) ([]Endpoint, error) {
	var eps []Endpoint
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		e, err := ParseEndpoint(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		eps = append(eps, e)
	}
	return eps, sc.Err()
}

// Run reads the file now (an error if it cannot), then every Interval.
func (f File) Run(ctx context.Context, update func([]Endpoint)) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	read := func() ([]Endpoint, error) {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, err
		}
		eps, err := ReadEndpoints(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		return eps, nil
	}
	cur, err := read()
	if err != nil {
		return err
	}
	update(cur)
	iv := f.Interval
	if iv <= 0 {
		iv = time.Second
	}
	st := settle{cur: cur}
	again := min(iv/4, 100*time.Millisecond) // the second read of a change
	every(ctx, iv, func() {
		for i := 0; i < 2; i++ {
			eps, err := read()
			if err != nil {
				log.Warn("backends file", "err", err)
				return
			}
			if st.next(eps) {
				update(eps)
				return
			}
			if !st.waiting {
				return // unchanged
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(again):
			}
		}
	})
	return nil
}

// settle publishes a changed backend list once two reads in a row agree.
type settle struct {
	cur, pending []Endpoint
	waiting      bool
}

// next takes a read list and reports whether it is now the list.
func (s *settle) next(eps []Endpoint) bool {
	if sameEndpoints(eps, s.cur) {
		s.pending, s.waiting = nil, false
		return false
	}
	if s.waiting && sameEndpoints(eps, s.pending) {
		s.cur, s.pending, s.waiting = eps, nil, false
		return true
	}
	s.pending, s.waiting = eps, true
	return false
}
