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
// or parsed leaves the list as it was (logged).
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
	every(ctx, iv, func() {
		eps, err := read()
		if err != nil {
			log.Warn("backends file", "err", err)
			return
		}
		if !sameEndpoints(eps, cur) {
			cur = eps
			update(eps)
		}
	})
	return nil
}
