package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/kilnai/kiln/serve"
)

// Stream defaults.
const (
	// DefaultStreamInFlight bounds the requests of one WebSocket connection
	// being worked on or waiting to be written; the server stops reading
	// while the bound is reached (backpressure).
	DefaultStreamInFlight = 16
	// DefaultPingInterval is how often an idle stream is pinged.
	DefaultPingInterval = 30 * time.Second
)

// DecodeStreamMessage decodes one WebSocket message of the inference stream:
// a text message is a JSON request; a binary message is a 4-byte
// little-endian JSON header length, the JSON header, then the binary tensor
// data, as in the binary tensor data extension.
func DecodeStreamMessage(binaryMsg bool, msg []byte) (*Decoded, error) {
	if !binaryMsg {
		return DecodeRequest(msg, -1)
	}
	if len(msg) < 4 {
		return nil, fmt.Errorf("%w: binary message shorter than its 4-byte header length", ErrDecode)
	}
	hl := binary.LittleEndian.Uint32(msg)
	if uint64(hl) > uint64(len(msg)-4) {
		return nil, fmt.Errorf("%w: header length %d exceeds the message", ErrDecode, hl)
	}
	return DecodeRequest(msg[4:], int(hl))
}

type streamReply struct {
	typ websocket.MessageType
	msg []byte
}

// stream serves /v2/models/{model}[/versions/{version}]/stream: each message
// is an inference request; each result is sent as soon as it and every
// earlier one are ready, in request order.
func (h *handler) stream(w http.ResponseWriter, r *http.Request) {
	model, ver := r.PathValue("model"), r.PathValue("version")
	if _, _, err := h.s.ModelConfig(model, ver); err != nil {
		h.fail(w, err)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept wrote the error
	}
	defer c.CloseNow()
	c.SetReadLimit(h.opts.MaxRequestBytes)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	inflight := max(h.opts.StreamInFlight, 1)
	pending := make(chan chan streamReply, inflight-1)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for res := range pending {
			var rep streamReply
			select {
			case rep = <-res:
			case <-ctx.Done():
				return
			}
			if err := c.Write(ctx, rep.typ, rep.msg); err != nil {
				cancel()
				return
			}
		}
	}()
	go func() {
		t := time.NewTicker(h.opts.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(ctx, h.opts.PingInterval)
			err := c.Ping(pctx)
			pcancel()
			if err != nil {
				cancel()
				return
			}
		}
	}()

	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			break
		}
		res := make(chan streamReply, 1)
		select {
		case pending <- res:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		go func() { res <- h.streamOne(ctx, model, ver, typ == websocket.MessageBinary, msg) }()
	}
	// The client closed the stream or went away: no answer can reach it any
	// more, so its queued and running requests end now.
	cancel()
	close(pending)
	<-writerDone
	c.Close(websocket.StatusNormalClosure, "")
}

func (h *handler) streamOne(ctx context.Context, model, ver string, binaryMsg bool, msg []byte) streamReply {
	fail := func(id string, err error) streamReply {
		b, _ := json.Marshal(map[string]any{"id": id, "error": err.Error(), "code": Status(err)})
		return streamReply{websocket.MessageText, b}
	}
	d, err := DecodeStreamMessage(binaryMsg, msg)
	if err != nil {
		return fail("", err)
	}
	resp, err := h.s.Infer(ctx, &serve.InferRequest{
		Model: model, Version: ver, ID: d.ID, Inputs: d.Inputs, Outputs: d.Outputs,
		Priority: d.Priority, Timeout: time.Duration(d.TimeoutMicros) * time.Microsecond,
	})
	if err != nil {
		return fail(d.ID, err)
	}
	hdr, bins, err := encodeResponse(resp, d)
	if err != nil {
		return fail(d.ID, err)
	}
	if len(bins) == 0 {
		return streamReply{websocket.MessageText, hdr}
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(hdr)))
	out = append(out, hdr...)
	for _, b := range bins {
		out = append(out, b...)
	}
	return streamReply{websocket.MessageBinary, out}
}
