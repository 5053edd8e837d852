package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/coder/websocket"
)

// proxyWebSocket proxies /v2/models/{m}/stream: it opens the stream on a
// backend where the model is ready (another one if that fails), then
// accepts the client's and copies messages both ways, as they are, until
// either side closes; the close status goes across.
func (g *Gateway) proxyWebSocket(w http.ResponseWriter, r *http.Request, rt route) {
	var (
		bc  *websocket.Conn
		b   *Backend
		err error
	)
	var tried []*Backend
	for attempt := 0; attempt < g.opts.MaxAttempts; attempt++ {
		if b, err = g.pick(rt, tried); err != nil {
			break
		}
		tried = append(tried, b)
		h := http.Header{}
		if a := r.Header.Get("Authorization"); a != "" {
			h.Set("Authorization", a)
		}
		if g.opts.BackendToken != "" {
			h.Set("Authorization", "Bearer "+g.opts.BackendToken)
		}
		var resp *http.Response
		bc, resp, err = websocket.Dial(r.Context(), "ws://"+b.HTTP+r.URL.RequestURI(),
			&websocket.DialOptions{HTTPHeader: h, HTTPClient: &http.Client{Transport: g.transport}})
		if err == nil {
			break
		}
		switch {
		case resp == nil:
			g.done(b, rt, unreached)
		case resp.StatusCode == http.StatusServiceUnavailable:
			g.done(b, rt, refused)
		default:
			// the backend refused the upgrade (401, 404, ...): its answer stands
			writeError(w, resp.StatusCode, "backend refused the stream: "+err.Error())
			return
		}
		g.metrics.retries.WithLabelValues(b.Name(), rt.model, "unreached").Inc()
	}
	if bc == nil {
		if err == nil {
			err = ErrNoBackend
		}
		g.reject(w, err)
		return
	}
	defer bc.CloseNow()
	bc.SetReadLimit(g.opts.MaxRequestBytes * 4)
	cc, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer cc.CloseNow()
	cc.SetReadLimit(g.opts.MaxRequestBytes)
	b.outstanding.Add(1)
	defer b.outstanding.Add(-1)
	g.metrics.requests.WithLabelValues(b.Name(), rt.model, "101").Inc()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- pump(ctx, bc, cc) }()
	go func() { errc <- pump(ctx, cc, bc) }()
	err = <-errc
	code, reason := websocket.StatusGoingAway, "peer gone"
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		code, reason = ce.Code, ce.Reason
	}
	cc.Close(code, reason)
	bc.Close(code, reason)
	cancel()
	<-errc
}

// pump copies messages from src to dst until an error (a close included).
func pump(ctx context.Context, dst, src *websocket.Conn) error {
	for {
		typ, data, err := src.Read(ctx)
		if err != nil {
			return err
		}
		if err := dst.Write(ctx, typ, data); err != nil {
			return err
		}
	}
}
