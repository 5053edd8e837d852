// Package all registers every operator family of kiln; import it for its
// side effect.
package all

import (
	// Each family registers its operators in init.
	_ "github.com/kilnai/kiln/ops/control"
	_ "github.com/kilnai/kiln/ops/image"
	_ "github.com/kilnai/kiln/ops/math"
	_ "github.com/kilnai/kiln/ops/nn"
	_ "github.com/kilnai/kiln/ops/norm"
	_ "github.com/kilnai/kiln/ops/sequence"
	_ "github.com/kilnai/kiln/ops/shape"
)
