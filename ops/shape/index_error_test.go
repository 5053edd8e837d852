package shape

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// TestIndexErrors: an index outside its dimension is ErrIndex (and
// ErrBadInput), naming the index, so that a server answers it as the
// client's error; other bad inputs are not ErrIndex.
func TestIndexErrors(t *testing.T) {
	data := iotaF(4, 2)
	tests := []struct {
		name, op string
		in       []*tensor.Tensor
		index    bool   // want ErrIndex
		quote    string // the message names it
	}{
		{"gather", "Gather", []*tensor.Tensor{iotaF(3), i64(sh(2), 1, 30522)}, true, "30522"},
		{"gather negative", "Gather", []*tensor.Tensor{iotaF(3), i64(sh(1), -4)}, true, "-4"},
		{"gather int32", "Gather", []*tensor.Tensor{iotaF(3), i32(sh(1), 7)}, true, "7"},
		{"gather elements", "GatherElements", []*tensor.Tensor{data, i64(sh(1, 1), 9)}, true, "9"},
		{"gather nd", "GatherND", []*tensor.Tensor{iotaF(2, 2), i64(sh(1, 2), 5, 0)}, true, "5"},
		{"scatter elements", "ScatterElements", []*tensor.Tensor{iotaF(3), i64(sh(1), 3), f32(sh(1), 1)}, true, "3"},
		{"scatter nd", "ScatterND", []*tensor.Tensor{data, i64(sh(1, 1), 6), f32(sh(1, 2), 10, 20)}, true, "6"},
		{"gather float indices", "Gather", []*tensor.Tensor{iotaF(3), f32(sh(1), 1)}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opstest.Exec(opstest.Node(tt.op, len(tt.in), 1), 17, tt.in...)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ops.ErrBadInput) {
				t.Errorf("%v: not ErrBadInput", err)
			}
			if errors.Is(err, ops.ErrIndex) != tt.index {
				t.Errorf("%v: errors.Is(ErrIndex) = %v, want %v", err, !tt.index, tt.index)
			}
			if !strings.Contains(err.Error(), tt.quote) {
				t.Errorf("%v: does not name %s", err, tt.quote)
			}
		})
	}
}
