package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// pollLoop reads b's state at once, then every PollInterval, until ctx ends.
func (g *Gateway) pollLoop(ctx context.Context, b *Backend) {
	t := time.NewTicker(g.opts.PollInterval)
	defer t.Stop()
	for {
		g.poll(ctx, b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// indexEntry is one entry of a KServe v2 repository index.
type indexEntry struct {
	Name, Version, State string
}

// poll is one active health check of b: readiness, repository index (the
// READY model versions) and, with a metrics address, queue depth. A backend
// that cannot be reached is not ready.
func (g *Gateway) poll(ctx context.Context, b *Backend) {
	ready := g.pollReady(ctx, b)
	var models map[string]map[string]bool
	if ready {
		var err error
		if models, err = g.pollIndex(ctx, b); err != nil {
			g.log.Debug("poll index", "backend", b.Name(), "err", err)
			ready = false
		}
	}
	if ready && b.Metrics != "" {
		if q, err := g.pollQueue(ctx, b); err == nil {
			b.queue.Store(q)
		}
	}
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.ejectedUntil) {
		return // ejected: polls readmit it only once its time is over
	}
	if ready && !b.ready {
		b.healthySince = now
		g.log.Info("backend ready", "backend", b.Name(), "models", len(models))
	}
	if !ready && b.ready {
		g.log.Info("backend not ready", "backend", b.Name())
	}
	b.ready = ready
	if ready {
		b.models = models
	}
}

func (g *Gateway) backendRequest(ctx context.Context, method, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	if g.opts.BackendToken != "" {
		req.Header.Set("Authorization", "Bearer "+g.opts.BackendToken)
	}
	return g.poller.Do(req)
}

func (g *Gateway) pollReady(ctx context.Context, b *Backend) bool {
	resp, err := g.backendRequest(ctx, http.MethodGet, "http://"+b.HTTP+"/v2/health/ready")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (g *Gateway) pollIndex(ctx context.Context, b *Backend) (map[string]map[string]bool, error) {
	resp, err := g.backendRequest(ctx, http.MethodPost, "http://"+b.HTTP+"/v2/repository/index")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{resp.StatusCode}
	}
	var idx []indexEntry
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&idx); err != nil {
		return nil, err
	}
	models := map[string]map[string]bool{}
	for _, e := range idx {
		if models[e.Name] == nil {
			models[e.Name] = map[string]bool{}
		}
		if e.State == "READY" {
			models[e.Name][e.Version] = true
		}
	}
	return models, nil
}

// pollQueue sums the backend's nv_inference_pending_request_count.
func (g *Gateway) pollQueue(ctx context.Context, b *Backend) (int64, error) {
	resp, err := g.backendRequest(ctx, http.MethodGet, "http://"+b.Metrics+"/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, &statusError{resp.StatusCode}
	}
	return pendingRequests(io.LimitReader(resp.Body, 16<<20))
}

// pendingRequests sums the samples of nv_inference_pending_request_count in
// Prometheus' text format.
func pendingRequests(r io.Reader) (int64, error) {
	const name = "nv_inference_pending_request_count"
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // another metric with this prefix
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return int64(sum), sc.Err()
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + strconv.Itoa(e.code) }
