package devices_test

import (
	"fmt"

	"github.com/kilnai/kiln/device/devices"
)

// The devices kiln builds for, in the partitioner's order, and a name with
// a unit's ordinal.
func ExampleAll() {
	fmt.Println(devices.All().Names())
	d, ordinal, err := devices.Lookup("cuda:1")
	fmt.Println(d.Name(), ordinal, err)
	// Output:
	// [cuda cpu]
	// cuda 1 <nil>
}
