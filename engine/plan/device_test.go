package plan

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckDeviceAt: a plan runs on another unit of its own device only
// (a plan of "cuda:0" on "cuda:1", never a CPU plan on a GPU); DeviceBase
// drops the ordinal.
func TestCheckDeviceAt(t *testing.T) {
	for _, tt := range []struct {
		plan, at, want string
	}{
		{"cpu", "cuda:1", "the plan is for cpu and cannot run on cuda:1"},
		{"cuda:0", "cpu", "the plan is for cuda:0 and cannot run on cpu"},
		{"cuda:1", "metal:0", "the plan is for cuda:1 and cannot run on metal:0"},
	} {
		p := &Plan{Header: Header{Device: tt.plan}}
		err := p.CheckDeviceAt(tt.at)
		if !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("plan for %s at %s: %v, want ErrDevice saying %q", tt.plan, tt.at, err, tt.want)
		}
	}
	for in, want := range map[string]string{"cuda:1": "cuda", "cuda": "cuda", "cpu": "cpu", "": ""} {
		if got := DeviceBase(in); got != want {
			t.Errorf("DeviceBase(%q) = %q, want %q", in, got, want)
		}
	}
}
