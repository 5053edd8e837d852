package device_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cpu"
)

func TestDiff(t *testing.T) {
	cases := []struct {
		a, b device.Fingerprint
		want string
	}{
		{device.Fingerprint{"isa": "avx2"}, device.Fingerprint{"isa": "avx2"}, ""},
		{device.Fingerprint{"isa": "avx512"}, device.Fingerprint{"isa": "avx2"}, `isa: plan "avx512", this machine "avx2"`},
		{device.Fingerprint{"gpu": "H100"}, device.Fingerprint{}, `gpu: plan "H100", this machine has none`},
		{device.Fingerprint{}, device.Fingerprint{"int8": "vnni"}, `int8: plan has none, this machine "vnni"`},
	}
	for _, c := range cases {
		if got := device.Diff(c.a, c.b); got != c.want {
			t.Errorf("Diff(%v, %v) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

// unit is a device of several units, for Set.Lookup's ordinals.
type unit struct{}

func (unit) Name() string { return "unit" }
func (unit) Fingerprint() (device.Fingerprint, error) {
	return device.Fingerprint{"device": "unit"}, nil
}

func TestSetLookup(t *testing.T) {
	set := device.Set{unit{}, cpu.Device{}}
	if got := strings.Join(set.Names(), ","); got != "unit,cpu" {
		t.Errorf("Names() = %s, want the set's order unit,cpu", got)
	}
	for _, tt := range []struct {
		name, want string
		ord        int
	}{{"cpu", "cpu", 0}, {"unit", "unit", 0}, {"unit:1", "unit", 1}, {"unit:12", "unit", 12}} {
		d, ord, err := set.Lookup(tt.name)
		if err != nil || d.Name() != tt.want || ord != tt.ord {
			t.Errorf("Lookup(%q) = %v, %d, %v; want %s, %d", tt.name, d, ord, err, tt.want, tt.ord)
		}
	}
	d, _, _ := set.Lookup("cpu")
	fp, err := d.Fingerprint()
	if err != nil || fp["isa"] == "" || fp["arch"] == "" {
		t.Fatalf("cpu fingerprint %v, %v", fp, err)
	}
	for _, bad := range []string{"tpu", "cpu:x", "cpu:-1", "cpu:01", "cpu:", "cpu:+1", "unit:1:2", ""} {
		if _, _, err := set.Lookup(bad); !errors.Is(err, device.ErrUnknown) {
			t.Errorf("Lookup(%q) error %v, want ErrUnknown", bad, err)
		}
	}
	if _, _, err := set.Lookup("tpu"); err == nil || !strings.Contains(err.Error(), "unit, cpu") {
		t.Errorf("unknown device error should list the set's devices: %v", err)
	}
	if _, _, err := (device.Set{}).Lookup("cpu"); !errors.Is(err, device.ErrUnknown) {
		t.Errorf("empty set: %v, want ErrUnknown", err)
	}
}
