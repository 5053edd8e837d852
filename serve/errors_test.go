package serve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestWrapRunError: run errors the request caused become ErrInvalid (400),
// a model closed under the request ErrNotReady (503), the rest stay
// internal.
func TestWrapRunError(t *testing.T) {
	in := map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 1, 3, 8, 8)}
	for _, tt := range []struct {
		err      error
		want     error
		mentions string
	}{
		{fmt.Errorf("x: %w", engine.ErrInput), ErrInvalid, ""},
		{fmt.Errorf("gather: %w", ops.ErrIndex), ErrInvalid, ""},
		{fmt.Errorf("pool: %w", ops.ErrBadInput), ErrInvalid, "image [1 3 8 8]"},
		{fmt.Errorf("arena: %w", engine.ErrMemory), ErrInvalid, "image [1 3 8 8]"},
		{fmt.Errorf("run: %w", kiln.ErrClosed), ErrNotReady, ""},
		{errors.New("cuda: launch failed"), nil, ""},
	} {
		got := wrapRunError(tt.err, in)
		for _, kind := range []error{ErrInvalid, ErrNotReady} {
			if errors.Is(got, kind) != (kind == tt.want) {
				t.Errorf("wrapRunError(%v) = %v: errors.Is %v is %v", tt.err, got, kind, errors.Is(got, kind))
			}
		}
		if !errors.Is(got, tt.err) {
			t.Errorf("wrapRunError(%v) = %v lost the cause", tt.err, got)
		}
		if !strings.Contains(got.Error(), tt.mentions) {
			t.Errorf("wrapRunError(%v) = %q, want it to mention %q", tt.err, got, tt.mentions)
		}
	}
}

// TestVersionSpelling (issue 9, item 10): versions are spelled as the
// repository's folders are, for every protocol: "+1", "01", "1 " are
// invalid requests, not aliases of version 1.
func TestVersionSpelling(t *testing.T) {
	s := tinyServer(t, "max_batch_size: 4\nversion_policy { all {} }\n")
	for _, tt := range []struct {
		ver  string
		want error
	}{
		{"1", nil}, {"2", nil}, {"", nil},
		{"3", ErrNotFound},
		{"+1", ErrInvalid}, {"01", ErrInvalid}, {"1 ", ErrInvalid}, {"-1", ErrInvalid}, {"0x1", ErrInvalid}, {"1e0", ErrInvalid},
	} {
		_, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Version: tt.ver, Inputs: image(1)})
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("version %q: %v, want %v", tt.ver, err, tt.want)
		}
	}
}
