package record

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/tensor"
)

// request returns inputs "a" [1,4] float32 filled with v and "b" [1] int64 v.
func request(v float32) map[string]*tensor.Tensor {
	a := tensor.New(tensor.Float32, 1, 4)
	for i := range a.Float32s() {
		a.Float32s()[i] = v
	}
	b := tensor.New(tensor.Int64, 1)
	b.SetFloat(0, float64(v))
	return map[string]*tensor.Tensor{"a": a, "b": b}
}

// settle waits until the writer has dealt with every request queued.
func settle(t *testing.T, r *Recorder) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := r.Stats()
		if r.processed.Load() == st.Sampled-st.Dropped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer is stuck: %+v, processed %d", st, r.processed.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// inputs are the model inputs the recorded sets are read back for.
var inputs = []*ir.Value{
	{Name: "a", Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(4)}}},
	{Name: "b", Type: ir.Type{DType: tensor.Int64, Shape: ir.Shape{ir.S("batch")}}},
}

func TestRecorder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		offer    int
		sets     int // sets in the folder at the end
		written  uint64
		preexist int // sets in the folder before
	}{
		{name: "every request, below the bound", opts: Options{Fraction: 1, MaxSets: 10}, offer: 6, sets: 6, written: 6},
		// the reservoir keeps 5 but replaces some of them with later requests
		{name: "bounded by sets", opts: Options{Fraction: 1, MaxSets: 5, Seed: 3}, offer: 40, sets: 5},
		// a set is 45 bytes of files (4 floats, 1 int64, names, shapes): 2 fit in 120
		{name: "bounded by bytes", opts: Options{Fraction: 1, MaxSets: 100, MaxBytes: 120}, offer: 10, sets: 2, written: 2},
		{name: "sets of an earlier run kept", opts: Options{Fraction: 1, MaxSets: 10}, offer: 3, sets: 7, written: 3, preexist: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "recorded")
			if tc.preexist > 0 {
				r, err := New(Options{Dir: dir, Inputs: []string{"a", "b"}, Fraction: 1})
				if err != nil {
					t.Fatal(err)
				}
				for i := range tc.preexist {
					r.Offer(request(float32(100 + i)))
					settle(t, r)
				}
				r.Close()
			}
			o := tc.opts
			o.Dir, o.Inputs = dir, []string{"a", "b"}
			r, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.offer {
				in := request(float32(i))
				r.Offer(in)
				in["a"].Float32s()[0] = -1 // the caller reuses its buffer
				settle(t, r)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			st := r.Stats()
			if st.Sets != tc.sets || (tc.written > 0 && st.Written != tc.written) || st.Offered != uint64(tc.offer) {
				t.Fatalf("stats %+v, want %d sets, %d written", st, tc.sets, tc.written)
			}
			// kiln build --calib-data reads the folder as it is
			batches, err := quant.LoadBatches(dir, inputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(batches) != tc.sets {
				t.Fatalf("%d sets read back, want %d", len(batches), tc.sets)
			}
			seen := map[float32]bool{}
			for _, b := range batches {
				a := b["a"].Float32s()
				if a[0] != a[3] || b["b"].Int64s()[0] != int64(a[0]) || seen[a[0]] {
					t.Fatalf("set %v %v is not one request as it was offered", a, b["b"].Int64s())
				}
				seen[a[0]] = true
			}
			if tc.name == "bounded by sets" && st.Written <= 5 {
				t.Fatalf("the reservoir never replaced a set: %+v", st)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != tc.sets {
				t.Fatalf("the folder holds %d entries, want %d sets (no leftovers)", len(ents), tc.sets)
			}
		})
	}
}

func TestRecorderSamples(t *testing.T) {
	r, err := New(Options{Dir: t.TempDir(), Inputs: []string{"a", "b"}, Fraction: 0.25, MaxSets: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 2000 {
		r.Offer(request(float32(i)))
	}
	// binomial(2000, 0.25): mean 500, sd 19.4
	if st := r.Stats(); st.Sampled < 400 || st.Sampled > 600 {
		t.Fatalf("sampled %d of 2000 at 0.25", st.Sampled)
	}
}

func TestRecorderSkipsIncomplete(t *testing.T) {
	r, err := New(Options{Dir: t.TempDir(), Inputs: []string{"a", "b"}, Fraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := request(1)
	delete(in, "b")
	r.Offer(in)
	r.Close()
	if st := r.Stats(); st.Sampled != 0 || st.Sets != 0 {
		t.Fatalf("a request without input b was recorded: %+v", st)
	}
	r.Offer(request(2)) // after Close: ignored, no panic
}

func TestRecorderBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{Inputs: []string{"a"}, Fraction: 1},
		{Dir: dir, Fraction: 1},
		{Dir: dir, Inputs: []string{"a"}, Fraction: 0},
		{Dir: dir, Inputs: []string{"a"}, Fraction: 1.5},
		{Dir: dir, Inputs: []string{"a"}, Fraction: 1, MaxSets: -1},
	} {
		if _, err := New(o); !errors.Is(err, ErrOptions) {
			t.Errorf("New(%+v) = %v, want ErrOptions", o, err)
		}
	}
}
