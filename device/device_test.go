package device_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	_ "github.com/kilnai/kiln/device/cpu"
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

func TestLookup(t *testing.T) {
	d, ord, err := device.Lookup("cpu")
	if err != nil || d.Name() != "cpu" || ord != 0 {
		t.Fatalf("Lookup(cpu) = %v, %d, %v", d, ord, err)
	}
	fp, err := d.Fingerprint()
	if err != nil || fp["isa"] == "" || fp["arch"] == "" {
		t.Fatalf("cpu fingerprint %v, %v", fp, err)
	}
	for _, bad := range []string{"tpu", "cpu:x", "cpu:-1", "cpu:01"} {
		if _, _, err := device.Lookup(bad); !errors.Is(err, device.ErrUnknown) {
			t.Errorf("Lookup(%q) error %v, want ErrUnknown", bad, err)
		}
	}
	if _, _, err := device.Lookup("tpu"); err == nil || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("unknown device error should list known devices: %v", err)
	}
}
