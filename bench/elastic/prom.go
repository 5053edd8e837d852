package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// prometheus is a Prometheus server scraping the servers (file_sd, labels
// namespace, service and pod as the ServiceMonitor gives them) and the
// gateway.
type prometheus struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func startPrometheus(ctx context.Context, bin, dir, targets, gateway string, interval time.Duration) (*prometheus, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	iv := promDuration(interval)
	cfg := fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
scrape_configs:
  - job_name: kiln-server
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
  - job_name: kiln-gateway
    static_configs:
      - targets: [%q]
        labels: {namespace: kiln, service: kiln-gateway, pod: kiln-gateway-0}
`, iv, promDuration(min(interval, 10*time.Second)), targets, gateway)
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	p := &prometheus{addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--config.file="+path, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+p.addr, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	go func() {
		p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("prometheus exited at start: see %s", filepath.Join(dir, "prometheus.log"))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("prometheus not ready within 60 s: see %s", filepath.Join(dir, "prometheus.log"))
		}
	}
}

func (p *prometheus) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// query runs an instant query through the HTTP API and returns the value of
// each series by its label.
func (p *prometheus) query(ctx context.Context, q, label string) (map[string]float64, error) {
	u := "http://" + p.addr + "/api/v1/query?" + url.Values{"query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", r.Error)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus: value %v: %w", s.Value[1], err)
		}
		out[s.Metric[label]] = v
	}
	return out, nil
}
