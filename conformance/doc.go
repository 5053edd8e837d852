// Package conformance runs ONNX backend test folders (model.onnx plus
// test_data_set_N/{input,output}_N.pb) against kiln and reports, for each,
// passed, failed (with the reason) or skipped (with the category from
// skips.txt, the one list of tests kiln knowingly does not run).
package conformance
