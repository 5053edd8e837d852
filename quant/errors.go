package quant

import "errors"

var (
	// ErrCalibration is returned when calibration cannot run or finds
	// nothing to measure.
	ErrCalibration = errors.New("quant: calibration failed")
	// ErrCache is returned for a calibration cache file that cannot be read,
	// is malformed, or was made for another graph or method.
	ErrCache = errors.New("quant: bad calibration cache")
	// ErrData is returned for calibration data that does not fit the model:
	// a missing or extra input, a wrong data type or shape.
	ErrData = errors.New("quant: bad calibration data")
	// ErrQuantize is returned when the INT8 rewrite cannot do what it was
	// asked to (an unknown layer named in an override, a layer forced to
	// INT8 that cannot be).
	ErrQuantize = errors.New("quant: int8 rewrite failed")
	// ErrCompare is returned when the accuracy comparison cannot run or the
	// two runners disagree on the outputs they produce.
	ErrCompare = errors.New("quant: accuracy comparison failed")
	// ErrNotMeasurable (with ErrCompare or ErrData) says that the accuracy
	// comparison cannot measure these outputs on these inputs: the FP32
	// reference itself fails on them (random indices out of range, say), an
	// output holds strings, or random data of an input's type cannot be
	// made. It is not a fault of the model under test.
	ErrNotMeasurable = errors.New("quant: not measurable on these inputs")
)
