package api

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/coder/websocket"

	"github.com/kilnai/kiln/tensor"
)

// ErrProtocol is returned when a WebSocket stream message does not follow
// the protocol (a bad frame, header or tensor size).
var ErrProtocol = errors.New("api: bad stream message")

// WebSocketStream is a client of kiln serve's WebSocket inference stream
// (/v2/models/{model}/stream): each Send is one request, sent as a binary
// message (4-byte little-endian header length, JSON header, raw tensor
// data) that asks for binary outputs; Recv returns the answers in request
// order. One goroutine may Send while another Recvs.
type WebSocketStream struct {
	model string
	c     *websocket.Conn
}

// DialWebSocket opens the inference stream of model on the server at base
// ("http://host:port", "https://...", "ws://..." or "wss://..."); header
// (may be nil) is sent with the handshake, e.g. an Authorization bearer
// token. Responses up to maxMessage bytes are accepted (0: 64 MiB).
func DialWebSocket(ctx context.Context, base, model string, header http.Header, maxMessage int64) (*WebSocketStream, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("api: stream %s: %w", model, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("api: stream %s: URL %q: want http(s) or ws(s)", model, base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v2/models/" + url.PathEscape(model) + "/stream"
	c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("api: stream %s: HTTP %d: %w", model, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("%w: stream %s: %w", ErrUnavailable, model, err)
	}
	if maxMessage <= 0 {
		maxMessage = 64 << 20
	}
	c.SetReadLimit(maxMessage)
	return &WebSocketStream{model: model, c: c}, nil
}

type wsTensor struct {
	Name       string         `json:"name"`
	Datatype   string         `json:"datatype"`
	Shape      []int64        `json:"shape"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// Send sends one request with the given id (echoed by its answer).
func (s *WebSocketStream) Send(ctx context.Context, id string, inputs map[string]*tensor.Tensor) error {
	names := make([]string, 0, len(inputs))
	for n := range inputs {
		names = append(names, n)
	}
	slices.Sort(names)
	var hdr struct {
		ID         string         `json:"id,omitempty"`
		Inputs     []wsTensor     `json:"inputs"`
		Parameters map[string]any `json:"parameters"`
	}
	hdr.ID = id
	hdr.Parameters = map[string]any{"binary_data_output": true}
	var raws [][]byte
	size := 0
	for _, n := range names {
		t := inputs[n]
		if t == nil {
			return fmt.Errorf("api: stream %s: input %q is nil", s.model, n)
		}
		dt, err := Datatype(t.DType)
		if err != nil {
			return fmt.Errorf("api: stream %s: input %q: %w", s.model, n, err)
		}
		raw, err := EncodeRaw(t)
		if err != nil {
			return fmt.Errorf("api: stream %s: input %q: %w", s.model, n, err)
		}
		hdr.Inputs = append(hdr.Inputs, wsTensor{Name: n, Datatype: dt, Shape: WireShape(t.Shape),
			Parameters: map[string]any{"binary_data_size": len(raw)}})
		raws = append(raws, raw)
		size += len(raw)
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("api: stream %s: %w", s.model, err)
	}
	msg := make([]byte, 0, 4+len(h)+size)
	msg = binary.LittleEndian.AppendUint32(msg, uint32(len(h)))
	msg = append(msg, h...)
	for _, r := range raws {
		msg = append(msg, r...)
	}
	if err := s.c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return fmt.Errorf("api: stream %s: %w", s.model, err)
	}
	return nil
}

// Recv returns the next answer: its id and outputs, or an error wrapping
// ErrStream for a request the server failed (the stream goes on), or the
// connection's error (a *websocket.CloseError once the server closed it).
func (s *WebSocketStream) Recv(ctx context.Context) (id string, outputs map[string]*tensor.Tensor, err error) {
	typ, msg, err := s.c.Read(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("api: stream %s: %w", s.model, err)
	}
	hdr, raw := msg, []byte(nil)
	if typ == websocket.MessageBinary {
		if len(msg) < 4 {
			return "", nil, fmt.Errorf("%w: binary message of %d bytes", ErrProtocol, len(msg))
		}
		hl := binary.LittleEndian.Uint32(msg)
		if uint64(hl) > uint64(len(msg)-4) {
			return "", nil, fmt.Errorf("%w: header length %d exceeds the message", ErrProtocol, hl)
		}
		hdr, raw = msg[4:4+hl], msg[4+hl:]
	}
	var r struct {
		ID      string `json:"id"`
		Error   string `json:"error"`
		Outputs []struct {
			wsTensor
			Data json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(hdr, &r); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if r.Error != "" {
		return r.ID, nil, fmt.Errorf("%w: %s", ErrStream, r.Error)
	}
	out := map[string]*tensor.Tensor{}
	for _, o := range r.Outputs {
		n, ok := o.Parameters["binary_data_size"].(float64)
		if !ok {
			return r.ID, nil, fmt.Errorf("%w: output %q is not binary", ErrProtocol, o.Name)
		}
		if n < 0 || n > float64(len(raw)) {
			return r.ID, nil, fmt.Errorf("%w: output %q: binary_data_size %v exceeds the message", ErrProtocol, o.Name, n)
		}
		t, err := DecodeRaw(o.Datatype, o.Shape, raw[:int(n)])
		if err != nil {
			return r.ID, nil, fmt.Errorf("%w: output %q: %w", ErrProtocol, o.Name, err)
		}
		out[o.Name], raw = t, raw[int(n):]
	}
	return r.ID, out, nil
}

// Close ends the stream with a normal closure; answers not yet received are
// lost.
func (s *WebSocketStream) Close() error {
	return s.c.Close(websocket.StatusNormalClosure, "")
}

// CloseNow drops the connection without a close handshake.
func (s *WebSocketStream) CloseNow() error { return s.c.CloseNow() }
