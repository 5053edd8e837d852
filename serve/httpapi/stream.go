package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

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
	// StreamBudgetFactor times Options.MaxRequestBytes bounds the bytes of
	// the decoded inputs of one stream's requests in flight: the server
	// stops reading while they would exceed it (one request of any size is
	// always let through).
	StreamBudgetFactor = 2
)

// byteBudget bounds a sum of sizes; acquire waits for room.
type byteBudget struct {
	mu   sync.Mutex
	used int64
	max  int64
	wake chan struct{} // closed and replaced on every release
}

func newByteBudget(limit int64) *byteBudget {
	return &byteBudget{max: limit, wake: make(chan struct{})}
}

// acquire takes n bytes of the budget, waiting (until ctx ends) while they
// do not fit; n is let through alone when nothing else is held.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// inputBytes returns the bytes the inputs of d hold.
func inputBytes(d *Decoded) int64 {
	var n int64
	for _, t := range d.Inputs {
		n += int64(len(t.Data))
		for _, s := range t.Strings {
			n += int64(len(s)) + 16
		}
	}
	return n
}

// DecodeStreamMessage decodes one WebSocket message of the inference stream:
// a text message is a JSON request; a binary message is a 4-byte
// little-endian JSON header length, the JSON header, then the binary tensor
// data, as in the binary tensor data extension.
func DecodeStreamMessage(binaryMsg bool, msg []byte) (*Decoded, error) {
	return DecodeStreamMessageFor(binaryMsg, msg, nil)
}

// DecodeStreamMessageFor is DecodeStreamMessage checking the declared
// inputs against schema (nil: no check) before decoding their data, as
// DecodeRequestFor does.
func DecodeStreamMessageFor(binaryMsg bool, msg []byte, schema *Schema) (*Decoded, error) {
	body, hl, err := splitStreamMessage(binaryMsg, msg)
	if err != nil {
		return nil, err
	}
	return DecodeRequestFor(body, hl, schema)
}

// splitStreamMessage returns a stream message's request body and JSON
// header length (-1: all JSON).
func splitStreamMessage(binaryMsg bool, msg []byte) ([]byte, int, error) {
	if !binaryMsg {
		return msg, -1, nil
	}
	if len(msg) < 4 {
		return nil, 0, fmt.Errorf("%w: binary message shorter than its 4-byte header length", ErrDecode)
	}
	hl := binary.LittleEndian.Uint32(msg)
	if uint64(hl) > uint64(len(msg)-4) {
		return nil, 0, fmt.Errorf("%w: header length %d exceeds the message", ErrDecode, hl)
	}
	return msg[4:], int(hl), nil
}

type streamReply struct {
	typ websocket.MessageType
	msg []byte
	// arrived is when the request's message was read (Server.Served)
	arrived time.Time
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
	// The upgrade hijacks the connection, which clears the deadlines the
	// HTTP server's read and write timeouts set: a stream outlives them,
	// with pings as its liveness check.
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept wrote the error
	}
	defer c.CloseNow()
	c.SetReadLimit(h.opts.MaxRequestBytes)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	inflight := max(h.opts.StreamInFlight, 1)
	budget := newByteBudget(StreamBudgetFactor * h.opts.MaxRequestBytes)
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
			h.s.Served(model, rep.arrived)
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

	var seqOrder streamSequences
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			break
		}
		arrived := time.Now()
		res := make(chan streamReply, 1)
		select {
		case pending <- res:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		// Decoding here, before the next read, keeps only the decoded
		// tensors of the requests in flight, not their messages; the budget
		// bounds their bytes as StreamInFlight bounds their number.
		d, err := h.streamDecode(model, ver, typ == websocket.MessageBinary, msg)
		if err != nil {
			f := streamFailure(err)
			f.arrived = arrived
			res <- f
			continue
		}
		size := inputBytes(d)
		if budget.acquire(ctx, size) != nil {
			break
		}
		// the requests of one sequence run one after the other, in the
		// stream's order (the others of the stream run meanwhile)
		prev, done := seqOrder.next(d.Sequence)
		go func() {
			if prev != nil {
				select {
				case <-prev:
				case <-ctx.Done():
				}
			}
			rep := h.streamInfer(ctx, model, ver, d)
			if done != nil {
				close(done)
			}
			budget.release(size)
			rep.arrived = arrived
			res <- rep
		}()
	}
	// The client closed the stream or went away: no answer can reach it any
	// more, so its queued and running requests end now.
	cancel()
	close(pending)
	<-writerDone
	c.Close(websocket.StatusNormalClosure, "")
}

// streamFailure is the answer to a request that failed.
// maxEchoedID is the longest request id an error reply of a stream echoes.
const maxEchoedID = 1024

func streamFailure(err error) streamReply {
	var id string
	var re *requestError
	if errors.As(err, &re) && len(re.id) <= maxEchoedID && utf8.ValidString(re.id) {
		// the id of a request that failed is echoed when it can be as it
		// came: a long one, or one that is not UTF-8 (JSON would write each
		// bad byte as a 6-byte escape), is left out of the error
		id = re.id
	}
	b, _ := json.Marshal(map[string]any{"id": id, "error": err.Error(), "code": Status(err)})
	return streamReply{typ: websocket.MessageText, msg: b}
}

// requestError is the error of a request whose id is known.
type requestError struct {
	id  string
	err error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// streamDecode decodes one message of a stream; when the model's queue is
// full it refuses it without decoding it. Its errors carry the request's id
// when the message has one.
func (h *handler) streamDecode(model, ver string, binaryMsg bool, msg []byte) (*Decoded, error) {
	body, hl, err := splitStreamMessage(binaryMsg, msg)
	if err != nil {
		return nil, err
	}
	withID := func(err error) error {
		hdr := body
		if hl >= 0 {
			hdr = body[:hl]
		}
		return &requestError{id: requestID(hdr), err: err}
	}
	if err := h.s.Admit(model, ver); err != nil {
		return nil, withID(err)
	}
	cfg, _, err := h.s.ModelConfig(model, ver)
	if err != nil {
		return nil, withID(err)
	}
	d, err := DecodeRequestFor(body, hl, h.schemaOf(cfg, model, ver))
	if err != nil {
		return nil, withID(err)
	}
	return d, nil
}

// streamInfer runs one decoded request of a stream and returns its answer.
func (h *handler) streamInfer(ctx context.Context, model, ver string, d *Decoded) streamReply {
	req, err := h.inferRequest(model, ver, d)
	var resp *serve.InferResponse
	if err == nil {
		resp, err = h.infer1(ctx, req)
	}
	if err == nil {
		var hdr []byte
		var bins [][]byte
		if hdr, bins, err = encodeResponse(resp, d); err == nil {
			if len(bins) == 0 {
				return streamReply{typ: websocket.MessageText, msg: hdr}
			}
			out := binary.LittleEndian.AppendUint32(nil, uint32(len(hdr)))
			out = append(out, hdr...)
			for _, b := range bins {
				out = append(out, b...)
			}
			return streamReply{typ: websocket.MessageBinary, msg: out}
		}
	}
	return streamFailure(&requestError{id: d.ID, err: err})
}

// streamSequences orders a stream's requests of each sequence: a request
// of a sequence waits for the stream's previous request of it.
type streamSequences map[string]chan struct{}

// maxStreamSequences bounds the sequences a stream remembers; past it the
// finished ones are forgotten.
const maxStreamSequences = 1024

// next returns the channel closed when q's previous request of the stream
// is done (nil: none) and the one to close when this one is (nil for a
// request that names no sequence).
func (m *streamSequences) next(q serve.Sequence) (prev, done chan struct{}) {
	if !q.Set() {
		return nil, nil
	}
	if *m == nil {
		*m = streamSequences{}
	}
	if len(*m) >= maxStreamSequences {
		for k, c := range *m {
			select {
			case <-c:
				delete(*m, k)
			default:
			}
		}
	}
	k := q.String()
	prev, done = (*m)[k], make(chan struct{})
	(*m)[k] = done
	return prev, done
}
