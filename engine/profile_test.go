package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestParseRange(t *testing.T) {
	cases := []struct {
		in      string
		want    Range
		wantErr string
	}{
		{in: "x:1x3x224x224,8x3x224x224,32x3x224x224", want: Range{"x", []int{1, 3, 224, 224}, []int{8, 3, 224, 224}, []int{32, 3, 224, 224}}},
		{in: "in:put:2x4", want: Range{"in:put", []int{2, 4}, []int{2, 4}, []int{2, 4}}},
		{in: "x:4x3,2x3,8x3", wantErr: "min <= opt <= max"},
		{in: "x:1x3,2x3x4,8x3", wantErr: "different ranks"},
		{in: "x:1x3,2x3", wantErr: "three shapes"},
		{in: "x:1xa", wantErr: "bad dimension"},
		{in: "1x3", wantErr: "NAME:MIN,OPT,MAX"},
		{in: "x:", wantErr: "empty shape"},
	}
	for _, c := range cases {
		got, err := ParseRange(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrProfile) {
				t.Errorf("ParseRange(%q) error %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || got.Input != c.want.Input || shapeStr(got.Min) != shapeStr(c.want.Min) || shapeStr(got.Opt) != shapeStr(c.want.Opt) || shapeStr(got.Max) != shapeStr(c.want.Max) {
			t.Errorf("ParseRange(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestProfileValidate(t *testing.T) {
	in := &ir.Value{Name: "x", Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(3)}}}
	fixed := &ir.Value{Name: "f", Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.D(2)}}}
	inputs := []*ir.Value{in, fixed}
	cases := []struct {
		p       Profile
		wantErr string
	}{
		{Profile{"ok", []Range{{"x", []int{1, 3}, []int{4, 3}, []int{8, 3}}}}, ""},
		{Profile{"none", nil}, `no range for dynamic input "x"`},
		{Profile{"name", []Range{{"y", []int{1, 3}, []int{1, 3}, []int{1, 3}}}}, `no input "y"`},
		{Profile{"rank", []Range{{"x", []int{1}, []int{1}, []int{1}}}}, "rank 2"},
		{Profile{"fixed", []Range{{"x", []int{1, 4}, []int{1, 4}, []int{1, 4}}}}, "fixed at 3"},
		{Profile{"twice", []Range{{"x", []int{1, 3}, []int{1, 3}, []int{1, 3}}, {"x", []int{1, 3}, []int{1, 3}, []int{1, 3}}}}, "twice"},
		{Profile{"order", []Range{{"x", []int{4, 3}, []int{1, 3}, []int{8, 3}}}}, "min <= opt <= max"},
	}
	for _, c := range cases {
		err := c.p.Validate(inputs)
		if c.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", c.p.Name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: error %v, want %q", c.p.Name, err, c.wantErr)
		}
	}
}

func TestCheckProfiles(t *testing.T) {
	ps := []Profile{
		{"small", []Range{{"x", []int{1, 3}, []int{1, 3}, []int{4, 3}}}},
		{"large", []Range{{"x", []int{8, 3}, []int{16, 3}, []int{32, 3}}}},
	}
	x := func(b int) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, b, 3)}
	}
	for _, c := range []struct{ batch, want int }{{1, 0}, {4, 0}, {8, 1}, {32, 1}} {
		got, err := CheckProfiles(ps, x(c.batch))
		if err != nil || got != c.want {
			t.Errorf("batch %d: profile %d, %v; want %d", c.batch, got, err, c.want)
		}
	}
	_, err := CheckProfiles(ps, x(6))
	if !errors.Is(err, ErrInput) || !errors.Is(err, ErrProfile) {
		t.Fatalf("batch 6: %v, want ErrInput and ErrProfile", err)
	}
	for _, want := range []string{`input "x" dimension 0 is 6`, "[1, 4]", `"small"`, "[8, 32]", `"large"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, err = CheckProfiles(ps[:1], x(64))
	if err == nil || !strings.Contains(err.Error(), `input "x" dimension 0 is 64, outside the range [1, 4] of profile "small"`) {
		t.Errorf("single profile error: %v", err)
	}
	if i, err := CheckProfiles(nil, x(64)); i != 0 || err != nil {
		t.Errorf("no profiles: %d, %v", i, err)
	}
}
